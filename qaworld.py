"""
A small world to ask about, a sibling of the tiny corpus (tinyspeech.py speaks it): people, each with a home town,
a job, a pet and a favourite colour, stated in text and asked about in text and in speech.

    python qaworld.py                     # a few people, their facts, questions and answers, and the split

The split is the point (the question of the seeds: does what the model learned in text carry over when the question
is spoken?). A share of the people are 'text_only': their facts are stated and asked in text during training and
never appear in speech; the model learns to answer spoken questions about the other people ('both'). The held-out
test asks about the text-only people in speech, beside the same questions in text. check_split() refuses a build in
which a held-out fact reaches a spoken transcript (and tests/test_chat.py reads the written dataset back to check
it again).
"""
import random
import re

import tinyspeech
from configurator import apply_overrides, run

NAMES = ['Anna', 'Ben', 'Clara', 'David', 'Emma', 'Felix', 'Grace', 'Henry', 'Iris', 'Jack', 'Kate', 'Leo', 'Mia',
         'Noah', 'Olga', 'Paul', 'Rosa', 'Sam', 'Tina', 'Victor', 'Wendy', 'Adam', 'Bella', 'Carl', 'Diana', 'Eric',
         'Fiona', 'George', 'Hannah', 'Ivan', 'Julia', 'Kevin', 'Laura', 'Martin', 'Nina', 'Oscar', 'Peter', 'Rachel',
         'Simon', 'Tom', 'Ursula', 'Vera', 'Walter', 'Alice', 'Brian', 'Chloe', 'Daniel', 'Ella', 'Frank', 'Gina',
         'Harry', 'Isabel', 'James', 'Karen', 'Lucas', 'Maria', 'Nathan', 'Olivia', 'Philip', 'Ruby', 'Steven',
         'Tessa', 'Vincent', 'William', 'Amy', 'Bruno', 'Cathy', 'Dennis', 'Edith', 'Fred', 'Gloria', 'Hugo', 'Irene',
         'Joseph', 'Kurt', 'Linda', 'Marco', 'Nora', 'Otto', 'Pam', 'Rita', 'Sarah', 'Thomas', 'Una', 'Vivian',
         'Wanda', 'Albert', 'Betty', 'Colin', 'Dora', 'Edward', 'Flora', 'Gordon', 'Helen', 'Igor', 'Jane', 'Keith',
         'Lily', 'Mark', 'Nancy', 'Owen', 'Penny', 'Ralph', 'Sophie', 'Tony', 'Viola', 'Wayne', 'Arthur', 'Bonnie',
         'Cecil', 'Daisy', 'Elliot', 'Freya', 'Gavin', 'Hazel', 'Ian', 'Joan', 'Karl', 'Lucy', 'Max', 'Nadia',
         'Oliver', 'Pia', 'Roger', 'Stella', 'Tim', 'Ulrich', 'Violet', 'Warren', 'Andrew', 'Bridget', 'Clive',
         'Donna', 'Eva', 'Fabian', 'Greta', 'Howard', 'Ingrid', 'Jonas', 'Kim', 'Louis', 'Molly', 'Neil', 'Opal',
         'Patrick', 'Rose', 'Sean', 'Tara', 'Uma', 'Vanessa', 'Zoe', 'Alan', 'Beth', 'Craig', 'Dylan', 'Eileen',
         'Felicity', 'Glen', 'Holly', 'Isaac', 'Jenny', 'Kyle', 'Lena', 'Miles', 'Naomi', 'Mona', 'Perry',
         'Quentin', 'Robert', 'Sylvia', 'Trevor', 'Ulla', 'Vince', 'Yvonne', 'Aaron', 'Barbara', 'Cedric', 'Doris',
         'Ethan', 'Fanny', 'Gerald', 'Heidi', 'Ira', 'Jill', 'Kenneth', 'Lisa', 'Morris', 'Nigel', 'Orla', 'Pauline',
         'Rick', 'Susan', 'Terry', 'Valerie', 'Willow', 'Xavier', 'Yara', 'Zach', 'Gabriel', 'Hector', 'Jasper',
         'Ada', 'Boris', 'Celia', 'Dean', 'Elsa', 'Floyd', 'Gemma', 'Hank', 'Ines', 'Jared', 'Kira', 'Lionel', 'Mabel',
         'Ned', 'Odette', 'Piers', 'Reggie', 'Selma', 'Toby', 'Wilma', 'Agnes', 'Basil', 'Connor', 'Delia', 'Emil']
# the tiny corpus's sentences name people too: its names stay out of the world, so that no spoken sentence of it can
# pair a text-only person with one of their facts by chance
NAMES = [n for n in NAMES if n not in tinyspeech.NAMES]
# attribute -> (values, question, answer); the answer states the fact, the key word is the value
ATTRIBUTES = {
    'town': (['Lisbon', 'Paris', 'Berlin', 'Madrid', 'Rome', 'Vienna', 'Dublin', 'Oslo', 'Prague', 'Warsaw',
              'Athens', 'Boston', 'Chicago', 'Denver', 'Dallas', 'Toronto', 'Sydney', 'Tokyo', 'London', 'Cairo'],
             'Where does {name} live?', '{name} lives in {value}.'),
    'job': (['baker', 'doctor', 'teacher', 'farmer', 'pilot', 'nurse', 'painter', 'lawyer', 'dentist', 'writer',
             'singer', 'driver', 'plumber', 'builder', 'banker', 'cook', 'tailor', 'sailor', 'barber', 'gardener'],
            'What does {name} do?', '{name} is a {value}.'),
    'pet': (['cat', 'dog', 'rabbit', 'parrot', 'horse', 'goat', 'hamster', 'turtle', 'goldfish', 'pony', 'duck',
             'snake'],
            'What pet does {name} have?', '{name} has a {value}.'),
    'colour': (['red', 'blue', 'green', 'yellow', 'black', 'white', 'orange', 'purple', 'brown', 'grey', 'pink',
                'gold'],
               "What is {name}'s favourite colour?", "{name}'s favourite colour is {value}."),
}
GROUPS = ('text_only', 'both')


def make_world(n_people=200, text_only_share=0.25, seed=0):
    """[{name, town, job, pet, colour, group}]: each fact drawn uniformly, a fixed share of the people text-only."""
    if not 1 <= n_people <= len(NAMES):
        raise ValueError(f"--qa_people={n_people}: the world has names for 1..{len(NAMES)} people")
    if not 0 < text_only_share < 1:
        raise ValueError(f"--qa_text_only={text_only_share} must be between 0 and 1 (exclusive)")
    rng = random.Random(f'qaworld-{seed}')
    people = []
    for name in rng.sample(NAMES, n_people):
        people.append(dict(name=name, **{a: rng.choice(values) for a, (values, _, _) in ATTRIBUTES.items()}))
    n_text_only = max(1, round(text_only_share * n_people))
    text_only = {p['name'] for p in rng.sample(people, n_text_only)}
    for p in people:
        p['group'] = 'text_only' if p['name'] in text_only else 'both'
    return people


def question(person, attribute):
    return ATTRIBUTES[attribute][1].format(name=person['name'])


def answer(person, attribute):
    return ATTRIBUTES[attribute][2].format(name=person['name'], value=person[attribute])


def facts(person):
    """[(attribute, question, answer, key word)] for one person."""
    return [(a, question(person, a), answer(person, a), person[a]) for a in ATTRIBUTES]


def bio(person, rng):
    """The person's facts as one short text, in a random order: several orders teach the facts, not one string
    (Allen-Zhu & Li 2023, Physics of Language Models 3.1: varied statements make stored facts extractable)."""
    sentences = [answer(person, a) for a in ATTRIBUTES]
    rng.shuffle(sentences)
    return ' '.join(sentences)


GREETINGS = ('Say hello to {name}.', 'This is {name}.', '{name} is here now.', 'Have you met {name}?',
             'I talked to {name} today.', 'Where is {name}?', '{name} said good morning.', 'Is that {name}?',
             'We waited for {name}.', 'Tell me about {name}.', '{name} called again.', 'Thank you, {name}.')


def greetings(person, n=3):
    """The first n of the spoken lines with the name and no fact: they let the ear learn every name without
    hearing a held-out fact (the test questions' own recordings stay out of training)."""
    return [g.format(name=person['name']) for g in GREETINGS[:n]]


def corpus_lines(person, n, seed=0):
    """n sentences of the tiny corpus's kind that name the person and hold none of their fact values: the ear hears
    the name in many sentences, around words it already knows from the corpus."""
    return tinyspeech.sentences_naming(person['name'], n, seed, avoid=[person[a] for a in ATTRIBUTES])


# questions the world cannot answer, in the shapes of its own questions: every person is asked them in speech, so the
# ear hears each name inside a question, while the facts of text-only people stay out of speech
UNKNOWNS = (('Where does {name} work?', "I don't know where {name} works."),
            ('What does {name} eat?', "I don't know what {name} eats."),
            ('What car does {name} have?', "I don't know what car {name} has."),
            ("What is {name}'s favourite song?", "I don't know {name}'s favourite song."),
            ('How old is {name}?', "I don't know how old {name} is."),
            ("When is {name}'s birthday?", "I don't know when {name}'s birthday is."))


def unknowns(person, n):
    """The first n (question, answer) pairs of UNKNOWNS for one person: a question with the name and no fact."""
    return [(q.format(name=person['name']), a.format(name=person['name'])) for q, a in UNKNOWNS[:n]]


# what the world answers about a name it does not hold, in the shapes of its own answers
STRANGER_ANSWERS = {'town': "I don't know where {name} lives.", 'job': "I don't know what {name} does.",
                    'pet': "I don't know what pet {name} has.", 'colour': "I don't know {name}'s favourite colour."}


def strangers(people, n, seed=0):
    """The world's own questions about n names it does not hold, with "I don't know" answers: [(question, answer)].
    Asked in speech, they make the ear read the name in each question's shape from many names, instead of
    recognising the few recordings of the people it was asked about (a new name there is heard as a trained one)."""
    taken = {p['name'] for p in people}
    free = [name for name in NAMES if name not in taken]
    if not 0 <= n <= len(free):
        raise ValueError(f"--qa_strangers={n}: {len(free)} names are left beside {len(people)} people")
    names = random.Random(f'qaworld-strangers-{seed}').sample(free, n)
    return [(ATTRIBUTES[a][1].format(name=name), STRANGER_ANSWERS[a].format(name=name))
            for name in names for a in ATTRIBUTES]


def declines(text):
    """Whether an answer says it does not know (the UNKNOWNS' answers)."""
    return "don't know" in text.lower()


def normalise(text):
    return re.findall(r"[a-z]+", text.lower())


def answer_value(text, attribute):
    """The value of `attribute` an answer names: the one value it mentions, None when it mentions none or several."""
    words = set(normalise(text))
    found = [v for v in ATTRIBUTES[attribute][0] if v.lower() in words]
    return found[0] if len(found) == 1 else None


def names_person(text, name):
    """Whether an answer is about `name`: every answer of the world starts with the person's name ("Pia lives in ...",
    "Pia's favourite colour is ..."), so a right key word with another name is a lucky guess."""
    first = text.split()[:1]
    return bool(first) and first[0].split("'")[0].strip('.,?!') == name


def chance_line(people, attribute):
    """Accuracy of always answering the commonest value of an attribute among these people."""
    values = [p[attribute] for p in people]
    return max(values.count(v) for v in set(values)) / len(values) if values else 0.0


def check_split(people, spoken_texts):
    """Raise ValueError if a text-only person's fact reaches speech: if any spoken training text (a question, an
    answer, a greeting) names a text-only person together with one of their fact values, or asks a question about
    them. spoken_texts: every transcript spoken in a training example."""
    held = [p for p in people if p['group'] == 'text_only']
    for text in spoken_texts:
        words = set(normalise(text))
        for p in held:
            if p['name'].lower() not in words:
                continue
            for a in ATTRIBUTES:
                if p[a].lower() in words or text == question(p, a):
                    raise ValueError(f"held-out fact in speech: {text!r} is about text-only {p['name']} ({a})")


def main(argv):
    opts = apply_overrides(dict(qa_people=200, qa_text_only=0.25, seed=0), argv)
    people = make_world(opts['qa_people'], opts['qa_text_only'], opts['seed'])
    for p in people[:3]:
        print(f"{p['name']} ({p['group']}): {bio(p, random.Random(0))}")
        for a, q, ans, key in facts(p):
            print(f"  {q:<36} -> {ans:<36} key: {key}")
    n = {g: sum(p['group'] == g for p in people) for g in GROUPS}
    print(f"{len(people)} people: {n['text_only']} text-only (facts never spoken in training), {n['both']} in both "
          f"modalities; chance lines: " + ', '.join(f"{a} {chance_line(people, a):.2f}" for a in ATTRIBUTES))


if __name__ == '__main__':
    run(main)
