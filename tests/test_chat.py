"""Chat turns, the QA world and its split, chat mode end to end."""
import json
import os

import numpy as np
import pytest

import eval as evaluation
import prepare
import qaworld
import sample
import stream
import train
from codec import write_wav
from tokenfile import load_split
from tokenizer import FRAME_LEN, ROLES, TASKS, Tokenizer


def codes(frames, start=0):
    return (np.arange(frames * FRAME_LEN) + start) % 256


def test_chat_turns_round_trip_and_only_the_assistant_is_a_target():
    tok = Tokenizer('byte')
    turns = [('system', [('text', 'Answer briefly.')]),
             ('user', [('audio', codes(3))]),
             ('assistant', [('text', 'Anna lives in Lisbon.'), ('audio', codes(2, 5))]),
             ('user', [('text', 'And her pet?')]),
             ('assistant', [('words', (['a', 'cat'], codes(3, 9), [1, 2]))])]
    ids, mask = tok.chat(turns)
    back = tok.turns(ids)
    assert [role for role, _ in back] == ['system', 'user', 'assistant', 'user', 'assistant']
    assert back[1][1][0][0] == 'audio' and (back[1][1][0][1] == codes(3)).all()
    assert back[2][1][0] == ('text', 'Anna lives in Lisbon.') and (back[2][1][1][1] == codes(2, 5)).all()
    assert [k for k, _ in back[4][1]] == ['text', 'audio', 'text', 'audio']  # word by word: a, then cat
    # the target: every assistant token after its role marker, through the <eos> that ends its turn; nothing else
    role_at = {tok.special[f'<{r}>']: r for r in ROLES}
    speaker, expected = None, []
    for i in ids.tolist():
        if i in role_at:
            speaker = role_at[i]
            expected.append(False)
        else:
            expected.append(speaker == 'assistant')
    assert mask.tolist() == expected and mask.sum() > 0
    assert ids[mask].tolist().count(tok.eos) == 2 and ids[~mask].tolist().count(tok.eos) == 0
    # training and evaluation take the loss where the mask says, for chat examples
    assert (train.target_span(tok, 3, ids, 0) == mask).all()
    # a prompt for the next turn ends with <assistant>
    assert sample_prompt_ends_with_assistant(tok, turns[:2])


def sample_prompt_ends_with_assistant(tok, turns):
    prompt = tok.chat_prompt(turns)
    return prompt[-1] == tok.special['<assistant>'] and (prompt[:-1] == tok.chat(turns)[0]).all()


def test_chat_refuses_unknown_roles_and_empty_turns():
    tok = Tokenizer('byte')
    with pytest.raises(ValueError, match="unknown role 'bot'"):
        tok.chat([('bot', [('text', 'hi')])])
    with pytest.raises(ValueError, match='empty audio'):
        tok.chat([('user', [('audio', np.zeros(0, dtype=np.int64))])])
    with pytest.raises(ValueError, match='is empty'):
        tok.chat([('user', [])])


def test_answers_are_read_by_their_value():
    assert qaworld.answer_value('Pia lives in Lisbon.', 'town') == 'Lisbon'
    assert qaworld.answer_value('Pia lives in Lisbon or Paris.', 'town') is None  # hedging is not an answer
    assert qaworld.answer_value('Pia is a baker.', 'town') is None
    people = qaworld.make_world(40, 0.25, seed=1)
    assert sum(p['group'] == 'text_only' for p in people) == 10
    assert not {p['name'] for p in people} & set(prepare.tinyspeech.NAMES)
    held = next(p for p in people if p['group'] == 'text_only')
    with pytest.raises(ValueError, match='held-out fact in speech'):
        qaworld.check_split(people, [qaworld.answer(held, 'pet')])
    qaworld.check_split(people, qaworld.greetings(held, len(qaworld.GREETINGS)))  # a name alone is not a fact
    asked = [q for q, _ in qaworld.unknowns(held, len(qaworld.UNKNOWNS))]  # nor a question the world cannot answer
    qaworld.check_split(people, asked + [a for _, a in qaworld.unknowns(held, len(qaworld.UNKNOWNS))])
    assert not set(asked) & {qaworld.question(held, a) for a in qaworld.ATTRIBUTES}
    assert all(qaworld.names_person(qaworld.answer(held, a), held['name']) for a in qaworld.ATTRIBUTES)
    assert not qaworld.names_person(qaworld.answer(held, 'pet').replace(held['name'], 'Zed'), held['name'])
    assert not qaworld.names_person('', held['name'])


def test_a_fine_tuned_checkpoint_is_checked_against_its_bases_data(tmp_path):
    people = qaworld.make_world(40, 0.25, seed=1)
    held = next(p for p in people if p['group'] == 'text_only')

    def base(name, train_texts, val_texts=()):
        os.makedirs(tmp_path / name)
        with open(tmp_path / name / 'utterances.jsonl', 'w') as f:
            for split, texts in (('train', train_texts), ('val', val_texts)):
                f.writelines(json.dumps(dict(split=split, text=t)) + '\n' for t in texts)
        return str(tmp_path / name)

    clean = base('clean', ['Tom cleaned the white blanket.'], [qaworld.answer(held, 'pet')])  # held-out lines: fine
    leaky = base('leaky', [qaworld.answer(held, 'town')])
    record = lambda data, before=None: dict(checkpoint=f'{data}/ckpt.pt', step=1, data=data, before=before)
    notes = []
    checked = evaluation.check_base_data(people, dict(init_from=record(clean, record(str(tmp_path / 'gone')))), notes)
    assert checked == [dict(data=clean, spoken_transcripts=1)]
    assert len(notes) == 1 and 'not on this machine' in notes[0]  # a base whose data is absent is said, not skipped
    with pytest.raises(ValueError, match=r'held-out fact in speech.*leaky'):  # down the chain too
        evaluation.check_base_data(people, dict(init_from=record(clean, record(leaky))), [])
    assert evaluation.check_base_data(people, dict(), []) == []  # trained from scratch: nothing more to check


@pytest.fixture(scope='module')
def qa_data(tmp_path_factory):
    """A small QA world spoken by hibari, beside 30 corpus sentences; a few training steps on it."""
    pytest.importorskip('hibari')
    root = tmp_path_factory.mktemp('qa')
    opts = dict(prepare.config, source='qa', name='qa', out_dir=str(root), n_train=30, n_val=6, qa_people=12,
                voices='hibari', codec='mel', mel_codes=32, tts_words=1.0, qa_thought=0.5,
                qa_greetings=5, qa_unknown=2, qa_sentences=3, qa_strangers=2, asr_words=0.5)
    meta = prepare.prepare(opts)
    data = os.path.join(root, 'qa')
    ckpt_dir = os.path.join(root, 'out')
    train.train(dict(train.DEFAULTS, data_root=str(root), dataset='qa', out_dir=ckpt_dir, n_layer=1, n_head=2,
                     n_embd=32, block_size=384, batch_size=2, max_iters=3, eval_interval=3, eval_examples=4,
                     compile=False, dtype='float32', threads=1))
    return dict(data=data, meta=meta, ckpt=os.path.join(ckpt_dir, 'ckpt.pt'), root=root)


def test_no_held_out_fact_reaches_a_spoken_training_example(qa_data):
    """Checked on the written dataset itself: every training example is read back, and none that holds audio is
    about a text-only person's fact; no text-only question's recording is in training at all."""
    tok = Tokenizer.from_dict(qa_data['meta']['vocab'])
    world = json.load(open(os.path.join(qa_data['data'], 'qa.json')))
    people = world['people']
    held = [p for p in people if p['group'] == 'text_only']
    held_audio = {np.asarray(it['codes'], dtype=np.int64).tobytes() for it in world['test']
                  if it['group'] == 'text_only' and it['modality'] == 'audio'}
    assert len(held_audio) == 4 * len(held) == 12
    tokens, idx, _ = load_split(qa_data['data'], 'train')
    spoken_chats, asr_by_word, tts_whole, answered_in_speech = 0, 0, 0, set()
    for s, n, task, _ in idx:
        ids = np.asarray(tokens[s:s + n], dtype=np.int64)
        turns = tok.turns(ids) if task == 3 else [(None, tok.split(ids)[0])]
        pieces = [p for _, ps in turns for p in ps]
        audio = [x for kind, x in pieces if kind == 'audio']
        whole = [np.concatenate(audio)] if audio else []  # a word-by-word example's spans joined
        assert not any(a.tobytes() in held_audio for a in audio + whole)
        if audio:
            text = ' '.join(x for kind, x in pieces if kind == 'text').lower().split()
            words = set(qaworld.normalise(' '.join(text)))
            for p in held:
                assert p['name'].lower() not in words or not any(p[a].lower() in words for a in qaworld.ATTRIBUTES)
            spoken_chats += task == 3
            asr_by_word += TASKS[task] == 'asr' and len(audio) > 1
            tts_whole += TASKS[task] == 'tts' and len(audio) == 1
            if task == 3 and any(kind == 'audio' for role, ps in turns if role == 'user' for kind, _ in ps):
                answered_in_speech |= {x for role, ps in turns if role == 'assistant' for kind, x in ps if kind == 'text'}
    assert spoken_chats > 0 and asr_by_word > 0  # --asr_words=0.5: some of the world's lines transcribed word by word
    assert tts_whole == 0  # --tts_words=1.0: the world's lines are spoken word by word too, as the corpus's are
    # the held-out questions are in the val split instead, and every text-only fact is asked in training in text
    train_text = ' '.join(x for s, n, task, _ in idx if task == 3
                          for _, ps in tok.turns(np.asarray(tokens[s:s + n], dtype=np.int64))
                          for kind, x in ps if kind == 'text')
    assert all(qaworld.question(p, a) in train_text for p in held for a in qaworld.ATTRIBUTES)
    assert qa_data['meta']['splits']['val']['tasks']['chat']['examples'] == 12
    # every name is heard in training, the text-only people's too: in their 5 fact-free lines, and inside 2
    # questions the world cannot answer, asked in speech and answered "I don't know ..."
    assert all(set(qaworld.greetings(p, 5)) <= set(world['spoken_in_training']) for p in people)
    assert all({q for q, _ in qaworld.unknowns(p, 2)} <= set(world['spoken_in_training']) for p in people)
    lines = {p['name']: qaworld.corpus_lines(p, 3) for p in people}  # and in 3 sentences of the corpus's kind
    assert all(set(lines[p['name']]) <= set(world['spoken_in_training']) for p in people)
    assert all(p['name'] in line and not set(qaworld.normalise(line)) & {p[a].lower() for a in qaworld.ATTRIBUTES}
               for p in people for line in lines[p['name']])
    assert all(a in answered_in_speech for p in held for _, a in qaworld.unknowns(p, 2))
    # and 2 names outside the world are asked its 4 questions in speech, answered "I don't know ..."
    strangers = qaworld.strangers(people, 2)
    assert len(strangers) == 8
    assert not any(p['name'].lower() in qaworld.normalise(q) for q, _ in strangers for p in people)
    assert {q for q, _ in strangers} <= set(world['spoken_in_training'])
    assert all(a in answered_in_speech and qaworld.declines(a) for _, a in strangers)


def test_chat_mode_end_to_end(qa_data, tmp_path, one_thread):
    world = json.load(open(os.path.join(qa_data['data'], 'qa.json')))
    item = next(it for it in world['test'] if it['modality'] == 'audio')
    model, tok, codec, _ = sample.load_checkpoint(qa_data['ckpt'], 'cpu')
    wav = str(tmp_path / 'question.wav')
    write_wav(wav, sample.decode_codes(codec, np.asarray(item['codes'])))
    chat_file = tmp_path / 'chat.txt'
    chat_file.write_text(f"system: Answer briefly.\nuser: {wav}\nuser: {item['question']}\n")
    record = sample.main([f"--ckpt={qa_data['ckpt']}", '--mode=chat', f'--file={chat_file}', '--speak=True',
                          f'--out={tmp_path}', '--max_seconds=1', '--max_new_tokens=12'])
    assert [r['question'] for r in record['results']] == [wav, item['question']]
    # the second answer's prompt holds the whole conversation: the system line, the first question and answer
    second = record['results'][1]['prompt_ids']
    assert second.count(tok.special['<user>']) == 2 and second.count(tok.special['<assistant>']) == 2
    for r in record['results']:
        if r['answer']:
            assert os.path.getsize(r['wav']) > 44
    turns = stream.main([f"--ckpt={qa_data['ckpt']}", '--mode=chat', f'--question={wav}', f'--out={tmp_path / "s.wav"}',
                         '--max_seconds=1', '--max_new_tokens=12', '--warmup=False'])
    assert [role for role, _ in turns] == ['user', 'assistant']
    report = evaluation.evaluate_checkpoint(dict(evaluation.config, ckpt=qa_data['ckpt'], data=qa_data['data'], n=2,
                                                 loss_n=20, whisper='', samples=0, probe=False, qa_n=3, qa_speak_n=0,
                                                 chance_n=20))
    qa = report['qa']
    assert {k: qa[k]['n'] for k in ('text_only/text', 'text_only/audio', 'both/audio')} == \
        {'text_only/text': 3, 'text_only/audio': 3, 'both/audio': 3}
    assert all(0 <= qa[k]['accuracy'] <= 1 and 0 <= qa[k]['chance'] <= 1 and 0 <= qa[k]['declined'] <= 1
               for k in ('text_only/text', 'both/audio'))
    assert all(qa[k]['right_and_named'] <= qa[k]['accuracy'] for k in ('text_only/text', 'both/audio'))
    assert qaworld.declines("I don't know how old Pia is.") and not qaworld.declines('Pia lives in Lisbon.')
    assert 'QA answer accuracy' in evaluation.table(report)


def test_bad_chat_input_is_named(qa_data, tmp_path, one_thread):
    model, tok, codec, _ = sample.load_checkpoint(qa_data['ckpt'], 'cpu')
    empty = str(tmp_path / 'empty.wav')
    write_wav(empty, np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match='empty.wav: the file holds no audio samples'):
        sample.user_turn(tok, codec, empty, 'turn 1')
    with pytest.raises(ValueError, match='turn 2: the audio is empty'):
        sample.user_turn(tok, codec, np.zeros(0, dtype=np.int64), 'turn 2')
    with pytest.raises(ValueError, match='does not fit the model.s context of 384'):
        sample.chat(model, tok, [[('user', [('text', 'word ' * 400)])]], codec)
    (tmp_path / 'bad.txt').write_text('user: hello\nbot: hi\n')
    with pytest.raises(ValueError, match="bad.txt line 2: unknown role 'bot'"):
        sample.main([f"--ckpt={qa_data['ckpt']}", '--mode=chat', f"--file={tmp_path / 'bad.txt'}", f'--out={tmp_path}'])
    with pytest.raises(ValueError, match='qa_thought'):
        prepare.resolve_options(dict(prepare.config, source='qa', qa_thought=2.0))
    with pytest.raises(ValueError, match='qa_greetings=0 must be in 1..12'):
        prepare.resolve_options(dict(prepare.config, source='qa', qa_greetings=0))
    with pytest.raises(ValueError, match='qa_unknown=7 must be in 0..6'):
        prepare.resolve_options(dict(prepare.config, source='qa', qa_unknown=7))
    with pytest.raises(ValueError, match='qa_strangers=500: 194 names are left beside 12 people'):
        qaworld.strangers(qaworld.make_world(12), 500)


def test_the_worlds_voice_gives_the_ceiling_for_spoken_answers(qa_data, one_thread):
    """Whisper hears the key word in the world's own voice saying the answers; the codec's resynthesis is scored too."""
    pytest.importorskip('faster_whisper')
    transcribe, name = evaluation.whisper_transcriber('auto', 'cpu')
    if transcribe is None:
        pytest.skip(name)
    voice, why = evaluation.world_voice(qa_data['data'])
    assert why is None and voice['voice'] == 'hibari'
    with open(os.path.join(qa_data['data'], 'qa.json')) as f:
        items = [it for it in json.load(f)['test'] if it['modality'] == 'audio'][:4]
    _, _, codec, _ = sample.load_checkpoint(qa_data['ckpt'], 'cpu')
    heard = evaluation.voice_answer_measure(items, voice, codec, transcribe)
    assert heard['key_word_heard'] >= 0.75  # a natural voice: the key word is there (0.95-0.975 on 40 answers)
    assert 0 <= heard['key_word_heard_through_codec'] <= 1 and len(heard['examples']) == 4
    assert heard['examples'][0]['said'] == items[0]['answer']


def test_a_world_without_its_voice_says_why(tmp_path):
    (tmp_path / 'meta.json').write_text(json.dumps(dict(source_info=dict(qa=dict(speaker='hibari/steady')))))
    (tmp_path / 'utterances.jsonl').write_text(json.dumps(dict(speaker='joe/slow', voice='joe', text='Hi.')) + '\n')
    voice, why = evaluation.world_voice(str(tmp_path))
    assert voice is None and why.startswith("the world's speaker (hibari/steady) has no voiced record")
