import glob
import os

import pytest

from configurator import REPO, apply_overrides, parse_config_file

DEFAULTS = dict(batch_size=8, learning_rate=1e-3, compile=False, out_dir='out', device='auto', extra=None)


def test_overrides_apply_in_order_and_parse_types(tmp_path):
    cfg_file = tmp_path / 'c.py'
    cfg_file.write_text('"""a config"""\n# comment\nbatch_size = 16\nout_dir = "out/x"\n')
    cfg = apply_overrides(DEFAULTS, [str(cfg_file), '--batch_size=4', '--compile=True', '--extra=[1, 2]'])
    assert cfg == dict(DEFAULTS, batch_size=4, out_dir='out/x', compile=True, extra=[1, 2])
    assert DEFAULTS['batch_size'] == 8  # the defaults are not touched


def test_int_accepted_for_float_and_plain_strings():
    cfg = apply_overrides(DEFAULTS, ['--learning_rate=3', '--device=cpu'])
    assert cfg['learning_rate'] == 3.0 and isinstance(cfg['learning_rate'], float) and cfg['device'] == 'cpu'


@pytest.mark.parametrize('arg, message', [
    ('--batchsize=4', "unknown config key 'batchsize'"),
    ('--batch_size=0.5', 'batch_size expects int'),
    ('--compile=yes', 'compile expects True or False'),
    ('--learning_rate=fast', 'learning_rate expects float'),
    ('--batch_size', 'write overrides as --key=value'),
])
def test_bad_overrides_rejected(arg, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(DEFAULTS, [arg])


def test_config_file_must_be_pure_assignments(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('import os\nbatch_size = 2\n')
    with pytest.raises(ValueError, match='bad.py:1: a config file holds only'):
        parse_config_file(str(bad))
    bad.write_text('batch_size = 2 * 8\n')
    with pytest.raises(ValueError, match='not a plain literal'):
        parse_config_file(str(bad))


def test_derived_values_follow_overrides():
    from train import DEFAULTS as TRAIN, learning_rate
    cfg = apply_overrides(TRAIN, ['--max_iters=100', '--warmup_iters=10', '--learning_rate=1', '--min_lr=0.1'])
    assert learning_rate(0, cfg) == 0.1 and learning_rate(9, cfg) == 1.0  # warmup follows the overrides
    assert abs(learning_rate(100, cfg) - 0.1) < 1e-12 and learning_rate(55, cfg) == 0.55  # cosine ends at max_iters
    clock = dict(cfg, schedule_clock=True, time_limit=200.0)  # on the clock: the further along of steps and seconds
    assert learning_rate(55, clock, seconds=10.0) == 0.55 and abs(learning_rate(20, clock, seconds=110.0) - 0.55) < 1e-12
    assert abs(learning_rate(20, clock, seconds=200.0) - 0.1) < 1e-12 and learning_rate(5, clock, 200.0) == 0.6


def test_shipped_configs_parse_against_their_defaults():
    """Every config/ file parses against the defaults of the script that reads it, wherever pytest runs from."""
    import sweep
    from train import DEFAULTS as TRAIN
    train_configs = glob.glob(os.path.join(REPO, 'config', 'train_*.py'))
    finetune_configs = glob.glob(os.path.join(REPO, 'config', 'finetune_*.py'))
    sweep_configs = glob.glob(os.path.join(REPO, 'config', 'sweep_*.py'))
    assert len(train_configs) >= 4 and len(sweep_configs) >= 2, (train_configs, sweep_configs)
    for path in train_configs:
        apply_overrides(TRAIN, [path])
    for path in finetune_configs:  # read after config/train_qa.py, as their docstrings say
        assert apply_overrides(TRAIN, [os.path.join(REPO, 'config', 'train_qa.py'), path])['init_from']
    for path in sweep_configs:
        sc = apply_overrides(sweep.SWEEP_DEFAULTS, [path])
        apply_overrides(TRAIN, sweep.override_args(sc['train']))  # the train.py values a sweep passes to every run
