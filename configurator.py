"""
Config overrides: `python train.py config/train_tiny.py --batch_size=16 --compile=False`.

A config is a dict of plain values (the defaults at the top of train.py). apply_overrides() takes config
files (pure assignments `name = literal`, parsed, never executed) and `--key=value` arguments, in order,
and returns a new dict. It rejects unknown keys and values whose type does not match the default
(an int is accepted where a float is expected; a default of None accepts any literal), so a typo stops
the run instead of passing silently. Derived values (tokens per step, schedules) belong after this call.

Every script's command line goes through here, and every script runs its main() through run(): a mistake in the
user's input (a bad flag, a missing file, bad data) ends in one line on stderr and exit status 2, a bug in a
traceback.
"""
import ast
import os
import sys

REPO = os.path.dirname(os.path.abspath(__file__))


def parse_config_file(path):
    """config/*.py -> {name: value}. Only `name = literal` statements (and docstrings/comments) are allowed."""
    with open(path) as f:
        tree = ast.parse(f.read(), filename=path)
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{path}:{node.lineno}: a config file holds only `name = value` assignments")
        try:
            values[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise ValueError(f"{path}:{node.lineno}: the value of {node.targets[0].id!r} is not a plain literal") from None
    return values


def parse_value(text):
    """'3' -> 3, '1e-3' -> 0.001, 'True' -> True, 'None' -> None, 'abc' -> 'abc'."""
    if text.lower() in ('true', 'false'):
        return text.lower() == 'true'
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_type(key, value, default, source):
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{source}: {key} expects True or False, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    if type(value) is not type(default):
        raise ValueError(f"{source}: {key} expects {type(default).__name__} (default {default!r}), got {value!r}")
    return value


def apply_overrides(config, args, verbose=False):
    """Return a copy of config with config files and --key=value args applied left to right."""
    config = dict(config)
    for arg in args:
        if arg.startswith('--'):
            if '=' not in arg:
                raise ValueError(f"{arg}: write overrides as --key=value")
            key, text = arg[2:].split('=', 1)
            updates, source = {key: parse_value(text)}, arg
        else:
            updates, source = parse_config_file(arg), arg
        for key, value in updates.items():
            if key not in config:
                close = [k for k in config if k.startswith(key[:3])]
                raise ValueError(f"{source}: unknown config key {key!r}" + (f" (did you mean {close}?)" if close else ""))
            config[key] = check_type(key, value, config[key], source)
            if verbose:
                print(f"override {key} = {config[key]!r}  ({source})")
    return config


USER_ERRORS = (ValueError, FileNotFoundError, RuntimeError, ImportError)


def raised_by_this_project(e):
    """True when the innermost frame that raised e is one of this repository's own files: its checks of flags,
    files and data raise with a message meant for the user. The same exception types raised deep inside numpy or
    torch are bugs, and keep their traceback."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) == REPO


def run(main, argv=None):
    """Run a script's main(argv). A mistake in the user's input (a bad flag, a missing file, bad data) prints one
    line, 'error: ...', to stderr and exits with status 2; Ctrl-C exits with 130; anything else is a bug and
    raises with its traceback."""
    try:
        return main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)
    except USER_ERRORS as e:
        if not raised_by_this_project(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
