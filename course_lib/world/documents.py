"""Text generators of the course world: corpus documents, clinic notes, reviews.

Taught in chapter 00 (the data world) and chapter 01 (pretraining data, domain
shift, the entropy floor). Each generator takes a `Chooser`, so the
log-probability of every document is known exactly.
"""

from __future__ import annotations

import math

from course_lib.world.entities import (
    FEMALE_NAMES,
    FOODS,
    PET_NAMES,
    PETS,
    PROFESSIONS,
    TOWN_FEATURES,
    VISITOR_FIRST_NAMES,
    VISITOR_SURNAMES,
    WORKPLACE,
    Chooser,
    Person,
    Product,
    World,
)

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
PARTS = ["morning", "afternoon", "evening"]
LABELS = ("negative", "neutral", "positive")  # the review labels, worst to best
GOODS = ["apple", "pear", "egg", "onion", "carrot", "plum", "candle", "loaf"]
WORK_DONE = {
    "baker": "baked fresh bread",
    "carpenter": "built a new table",
    "teacher": "taught the children to read",
    "fisher": "caught a basket of fish",
    "painter": "painted a picture of the hills",
    "farmer": "milked the cows",
    "tailor": "sewed a warm coat",
    "gardener": "planted roses",
    "librarian": "sorted the old books",
    "potter": "made a blue bowl",
    "musician": "played the violin",
    "cook": "made a pot of soup",
}


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _a(word: str) -> str:
    """The word with its indefinite article: "a red", "an orange"."""
    return ("an " if word[0] in "aeiou" else "a ") + word


def _subject(ch: Chooser, p: Person) -> str:
    """How a later sentence refers to a person: full name, first name or pronoun."""
    return ch.choice([p.name, p.first, _cap(p.pronoun)])


def _owner(subject: str, p: Person) -> str:
    """The possessive of a subject form: "Mira's", "Her"."""
    return _cap(p.possessive) if subject == _cap(p.pronoun) else subject + "'s"


# Each fact can be stated in several ways: (text before the value, text after it).
FACT_FORMS = {
    "town": [("{s} lives in", "."), ("{o} home is in", "."), ("{s} has a house in", ".")],
    "profession": [("{s} works as a", "."), ("{s} is a", "."), ("{s} earns a living as a", ".")],
    "pet": [("{s} has a", " named {pet_name}."), ("{s} keeps a", " called {pet_name}.")],
    "food": [("{o} favourite food is", "."), ("{s} loves", " more than any other dish.")],
}


def fact_statement(
    p: Person, attribute: str, form: int, subject: str | None = None
) -> tuple[str, str]:
    """Form number `form` of a fact about p, split as (prefix, rest): prefix + " " + rest."""
    if attribute not in FACT_FORMS:
        raise ValueError(f"unknown attribute {attribute!r}; use one of {sorted(FACT_FORMS)}")
    s = p.name if subject is None else subject
    before, after = FACT_FORMS[attribute][form]
    prefix = before.format(s=s, o=_owner(s, p))
    return prefix, p.fact(attribute) + after.format(pet_name=p.pet_name)


def fact_sentence(ch: Chooser, p: Person, attribute: str, subject: str | None = None) -> str:
    """One sentence stating one fact about a person, in a random one of its forms."""
    prefix, rest = fact_statement(
        p, attribute, ch.randint(0, len(FACT_FORMS[attribute]) - 1), subject
    )
    return prefix + " " + rest


def profile_doc(ch: Chooser, w: World) -> str:
    """A short description of one person: two to four facts in random order."""
    p = ch.choice(w.people)
    attrs = ch.sample(["town", "profession", "pet", "food"], ch.randint(2, 4))
    sents = [fact_sentence(ch, p, attrs[0], p.name)]
    sents += [fact_sentence(ch, p, a, _subject(ch, p)) for a in attrs[1:]]
    return " ".join(sents)


def story_doc(ch: Chooser, w: World) -> str:
    """A day in the life of one person: market, counting, work, a meeting, supper."""
    p = ch.choice(w.people)
    s = [f"On {ch.choice(DAYS)} {ch.choice(PARTS)}, {p.name} walked to the market in {p.town}."]
    good = ch.choice(GOODS)
    a, b = ch.randint(1, 9), ch.randint(1, 9)
    sub = _subject(ch, p)
    s.append(f"{sub} had {a} {good}s and bought {b} more, so {p.pronoun} had {a + b} {good}s.")
    if ch.chance(0.5):
        price = ch.randint(2, 9)
        s.append(f"Each {good} cost {price} coins, so the {b} {good}s cost {b * price} coins.")
    if ch.chance(0.6):
        s.append(f"Later, at the {WORKPLACE[p.profession]}, {p.pronoun} {WORK_DONE[p.profession]}.")
    if ch.chance(0.5):
        q = ch.choice([x for x in w.people if x != p])
        s.append(f"There {p.pronoun} met {q.name}, the {q.profession} from {q.town}.")
    s.append(
        f"In the evening, {ch.choice([p.first, p.pronoun])} ate {p.food} and fed "
        f"{p.possessive} {p.pet} {p.pet_name}."
    )
    return " ".join(s)


def visitor_doc(ch: Chooser, w: World) -> str:
    """A one-off visitor: facts stated, then some restated in another phrasing.

    The restated values can only be predicted from the document itself, so the model
    learns to look facts up in its context (used by retrieval prompts in chapter 01).
    """
    first = ch.choice(VISITOR_FIRST_NAMES)
    v = Person(
        name=f"{first} {ch.choice(VISITOR_SURNAMES)}",
        pronoun="she" if first in FEMALE_NAMES else "he",
        town=ch.choice(w.towns),
        profession=ch.choice(PROFESSIONS),
        pet=ch.choice(PETS),
        pet_name=ch.choice(PET_NAMES),
        food=ch.choice(FOODS),
    )
    attrs = ch.sample(["town", "profession", "pet", "food"], ch.randint(2, 3))
    # Attributes never mentioned do not shape the text: take their draws out of logp.
    sizes = {
        "town": [len(w.towns)],
        "profession": [len(PROFESSIONS)],
        "pet": [len(PETS), len(PET_NAMES)],
        "food": [len(FOODS)],
    }
    ch.logp += sum(math.log(n) for a in sizes if a not in attrs for n in sizes[a])
    s = [f"A visitor called {v.name} came to {ch.choice(w.towns)}."]
    s += [fact_sentence(ch, v, a, v.name) for a in attrs]
    s.append("Later that day,")
    for a in ch.sample(attrs, ch.randint(1, len(attrs))):
        s.append(fact_sentence(ch, v, a, v.name))
    return " ".join(s)


def town_doc(ch: Chooser, w: World) -> str:
    """A town, its market day, and who lives there."""
    town = ch.choice(w.towns)
    s = [f"{town} is {TOWN_FEATURES[town]}.", f"The market in {town} opens on {ch.choice(DAYS)}."]
    people = ch.shuffled(w.residents(town))
    if people:
        names = [x.name for x in people]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        s.append(f"The people of {town} include {listed}.")
        x = ch.choice(people)
        s.append(f"Everyone in {town} knows {x.first}, the {x.profession}.")
    return " ".join(s)


def product_doc(ch: Chooser, w: World) -> str:
    """A catalogue entry for one product."""
    pr = ch.choice(w.products)
    if pr.kind.endswith("s"):  # headphones
        s = [
            f"The {pr.name} are {pr.colour} {pr.kind} made by {pr.brand}.",
            f"They cost {pr.price} coins.",
        ]
    else:
        s = [
            f"The {pr.name} is {_a(pr.colour)} {pr.kind} made by {pr.brand}.",
            f"It costs {pr.price} coins.",
        ]
    if ch.chance(0.5):
        s.append(f"The {pr.aspects[0]} and the {pr.aspects[1]} are easy to clean.")
    return " ".join(s)


# ---------------------------------------------------------------- reviews
POSITIVE = ["great", "excellent", "sturdy", "lovely", "reliable", "superb", "good", "solid"]
NEGATIVE = ["terrible", "awful", "flimsy", "poor", "useless", "bad", "disappointing", "weak"]
NEUTRAL = ["okay", "average", "ordinary", "acceptable", "standard", "fine"]
NEGATORS = ["not", "far from", "hardly", "never"]
# Words after the judgement, so that the word before "but" is rarely the adjective itself.
TAILS = ["", "", " to be honest", " in my view", " for daily use", " at first glance", " overall"]


PLURAL_ASPECTS = {"legs", "brakes", "gears", "straps", "pockets", "blades", "slots", "cushions"}


def _clause(ch: Chooser, aspect: str) -> tuple[str, int]:
    """One aspect judgement and its polarity: +1, -1 or 0."""
    kind = ch.weighted(["pos", "neg", "neu", "negated"], [3, 3, 2, 3])
    be = "are" if aspect in PLURAL_ASPECTS else "is"
    if kind == "pos":
        text, score = f"the {aspect} {be} {ch.choice(POSITIVE)}", 1
    elif kind == "neg":
        text, score = f"the {aspect} {be} {ch.choice(NEGATIVE)}", -1
    elif kind == "neu":
        text, score = f"the {aspect} {be} {ch.choice(NEUTRAL)}", 0
    elif ch.chance(0.5):  # a negated positive word is a negative judgement
        text, score = f"the {aspect} {be} {ch.choice(NEGATORS)} {ch.choice(POSITIVE)}", -1
    else:
        text, score = f"the {aspect} {be} {ch.choice(NEGATORS)} {ch.choice(NEGATIVE)}", 1
    return text + ch.choice(TAILS), score


def _label(score: int) -> str:
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


def review_text(ch: Chooser, pr: Product) -> tuple[str, str]:
    """A product review and its gold label.

    Rules: "X, but Y" and "although X, Y" take the polarity of Y (the part
    after the contrast wins; if Y is neutral, X decides); "X and Y" adds the
    polarities; a negated word flips its polarity. A bag of words cannot see these.
    """
    form = ch.weighted(["single", "and", "but", "although"], [2, 3, 4, 2])
    if form == "single":
        c1, s1 = _clause(ch, ch.choice(pr.aspects))
        body, score = _cap(c1) + ".", s1
    else:
        a1, a2 = ch.sample(pr.aspects, 2)
        c1, s1 = _clause(ch, a1)
        c2, s2 = _clause(ch, a2)
        if form == "and":
            body, score = f"{_cap(c1)} and {c2}.", s1 + s2
        elif form == "but":
            body, score = f"{_cap(c1)}, but {c2}.", s2 if s2 != 0 else s1
        else:
            body, score = f"Although {c1}, {c2}.", s2 if s2 != 0 else s1
    if pr.kind.endswith("s"):  # headphones
        mine, this = f"My {pr.kind} are {pr.colour}.", f"These {pr.kind} arrived on time."
    else:
        mine, this = f"My {pr.kind} is {_a(pr.colour)} one.", f"This {pr.kind} arrived on time."
    opener = ch.choice([f"I bought the {pr.name} last week.", this, mine, ""])
    return (opener + " " + body).strip(), _label(score)


def comment_doc(ch: Chooser, w: World) -> str:
    """An unlabelled customer comment, as it would appear on a shop's web page."""
    pr = ch.choice(w.products)
    text, _ = review_text(ch, pr)
    return f'A customer wrote about the {pr.name}: "{text}"'


CORPUS_KINDS = {
    "profile": (profile_doc, 3),
    "story": (story_doc, 4),
    "town": (town_doc, 1),
    "product": (product_doc, 1),
    "comment": (comment_doc, 2),
    "visitor": (visitor_doc, 2),
}


def corpus_doc(ch: Chooser, w: World) -> tuple[str, str]:
    """One general-domain pretraining document and its kind."""
    kind = ch.weighted(list(CORPUS_KINDS), [v[1] for v in CORPUS_KINDS.values()])
    return CORPUS_KINDS[kind][0](ch, w), kind


# ---------------------------------------------------------------- clinic notes
SYMPTOMS = {
    "productive cough": ("amoxicillin", [250, 500], "TDS", "chest clear on auscultation"),
    "dysuria": ("nitrofurantoin", [50, 100], "QDS", "urine dipstick positive for nitrites"),
    "migraine": ("sumatriptan", [50, 100], "PRN", "no focal neurological deficit"),
    "wheeze": ("salbutamol", [100, 200], "PRN", "peak flow reduced"),
    "hypertension": ("amlodipine", [5, 10], "OD", "BP elevated on repeat measurement"),
    "otalgia": ("amoxicillin", [250, 500], "TDS", "tympanic membrane erythematous"),
    "dyspepsia": ("omeprazole", [20, 40], "OD", "epigastric tenderness"),
    "insomnia": ("zopiclone", [4, 8], "ON", "sleep hygiene discussed"),
    "eczema": ("hydrocortisone", [1, 2], "BD", "erythematous plaques on flexures"),
    "gout": ("colchicine", [1, 2], "BD", "first MTP joint swollen"),
}
UNITS = {"salbutamol": "mcg", "hydrocortisone": "%", "colchicine": "mg"}


def clinic_note(ch: Chooser) -> str:
    """A terse clinical note: a domain whose words never occur in the corpus."""
    sym = ch.choice(sorted(SYMPTOMS))
    med, doses, freq, exam = SYMPTOMS[sym]
    dose = ch.choice(doses)
    unit = UNITS.get(med, "mg")
    dur = ch.randint(2, 14)
    sex = ch.choice(["M", "F"])
    age = ch.randint(18, 89)
    review = ch.choice([3, 7, 14, 28])
    return (
        f"Pt {age}{sex}. PC: {sym} x{dur}/7. O/E: {exam}. "
        f"Imp: {sym}. Rx: {med} {dose}{unit} {freq}. F/U {review}/7 if no improvement."
    )
