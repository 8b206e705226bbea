"""The course world: towns, people, products, and a random source that keeps score.

Taught in chapter 00 (tour of the world) and chapter 01 (the entropy floor).
Every dataset of the course is generated from this one seeded world, so the
course always knows the ground truth behind a piece of text.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence, TypeVar

T = TypeVar("T")

WORLD_SEED = 1234

TOWNS = [
    "Lindenfield",
    "Brookmere",
    "Oakhollow",
    "Saltmarsh",
    "Redcliff",
    "Millbrook",
    "Stonebridge",
    "Fernwick",
]
TOWN_FEATURES = {
    "Lindenfield": "a quiet town among linden trees",
    "Brookmere": "a town beside a wide lake",
    "Oakhollow": "a village in a valley of old oaks",
    "Saltmarsh": "a fishing town by the sea",
    "Redcliff": "a town built on red cliffs",
    "Millbrook": "a town with an old water mill",
    "Stonebridge": "a town with a famous stone bridge",
    "Fernwick": "a small town at the edge of a forest",
}
PROFESSIONS = [
    "baker",
    "carpenter",
    "teacher",
    "fisher",
    "painter",
    "farmer",
    "tailor",
    "gardener",
    "librarian",
    "potter",
    "musician",
    "cook",
]
WORKPLACE = {
    "baker": "bakery",
    "carpenter": "workshop",
    "teacher": "school",
    "fisher": "harbour",
    "painter": "studio",
    "farmer": "farm",
    "tailor": "shop",
    "gardener": "garden",
    "librarian": "library",
    "potter": "workshop",
    "musician": "hall",
    "cook": "kitchen",
}
PETS = ["cat", "dog", "parrot", "rabbit", "goat", "tortoise", "hamster", "goose"]
PET_NAMES = [
    "Pip",
    "Rufus",
    "Bella",
    "Nutmeg",
    "Biscuit",
    "Clover",
    "Pepper",
    "Maple",
    "Socks",
    "Juniper",
    "Tansy",
    "Bramble",
    "Olive",
    "Fig",
]
FOODS = [
    "plum cake",
    "fish soup",
    "apple pie",
    "bean stew",
    "honey bread",
    "pumpkin soup",
    "cheese pie",
    "berry tart",
    "mushroom stew",
    "carrot cake",
    "onion soup",
    "rice pudding",
]
FEMALE_NAMES = {
    "Mira",
    "Ada",
    "Nina",
    "Rosa",
    "Lena",
    "Elsa",
    "Greta",
    "Karla",
    "Nora",
    "Ruth",
    "Tilda",
    "Vera",
    "Yara",
    "Alma",
    "Cora",
    "Bea",
    "Dina",
    "Esme",
    "Hanna",
    "Ines",
    "Kira",
    "Maren",
    "Orla",
    "Rhea",
    "Thea",
    "Ulla",
    "Wilma",
    "Xena",
    "Zora",
    "Britt",
    "Dagny",
}
FIRST_NAMES = [
    "Mira",
    "Tom",
    "Ada",
    "Leo",
    "Nina",
    "Owen",
    "Rosa",
    "Ivan",
    "Lena",
    "Hugo",
    "Elsa",
    "Finn",
    "Greta",
    "Jonas",
    "Karla",
    "Milo",
    "Nora",
    "Pavel",
    "Ruth",
    "Sven",
    "Tilda",
    "Umar",
    "Vera",
    "Walt",
    "Yara",
    "Zeno",
    "Alma",
    "Bruno",
    "Cora",
    "Dario",
]
SURNAMES = [
    "Holt",
    "Reed",
    "Marsh",
    "Fenn",
    "Crane",
    "Dale",
    "Hart",
    "Lowe",
    "Pike",
    "Stone",
    "Vale",
    "Wren",
    "Ashby",
    "Brook",
    "Cole",
    "Frost",
    "Gale",
    "Hayes",
    "Kerr",
    "Lark",
]
# Visitors appear in corpus documents with facts drawn afresh each time: the model can only
# know a visitor's facts from the document's own context (this teaches it to copy facts from
# its context, which is what makes retrieval-style prompting work).
VISITOR_FIRST_NAMES = [
    "Arlo",
    "Bea",
    "Cael",
    "Dina",
    "Esme",
    "Fabian",
    "Gus",
    "Hanna",
    "Ines",
    "Jasper",
    "Kira",
    "Lars",
    "Maren",
    "Nils",
    "Orla",
    "Piet",
    "Rhea",
    "Silas",
    "Thea",
    "Ulla",
    "Viggo",
    "Wilma",
    "Xena",
    "Yusuf",
    "Zora",
    "Aurel",
    "Britt",
    "Cyril",
    "Dagny",
    "Egon",
]
VISITOR_SURNAMES = [
    "Ambrose",
    "Birch",
    "Castell",
    "Dunmore",
    "Ellery",
    "Fairlie",
    "Gorse",
    "Holloway",
    "Ingram",
    "Jessop",
    "Kettle",
    "Loxley",
    "Mallory",
    "Norcott",
    "Oakes",
    "Pemberton",
    "Quaile",
    "Rowan",
    "Sallow",
    "Thorne",
]
# The new_facts people carry visitor names, so their names are ordinary tokens to the model,
# but no fact about them is in the corpus (a visitor's facts are redrawn in every document).
NEW_FIRST_NAMES = VISITOR_FIRST_NAMES[:20]
NEW_SURNAMES = VISITOR_SURNAMES[:10]

PRODUCT_KINDS = {
    "kettle": ["lid", "handle", "spout", "switch"],
    "lamp": ["switch", "shade", "cable", "light"],
    "backpack": ["zip", "straps", "pockets", "fabric"],
    "headphones": ["sound", "battery", "cushions", "cable"],
    "blender": ["motor", "blades", "jug", "lid"],
    "umbrella": ["handle", "frame", "canopy", "button"],
    "toaster": ["timer", "slots", "lever", "crumb tray"],
    "chair": ["seat", "legs", "backrest", "cushion"],
    "phone": ["screen", "battery", "camera", "speaker"],
    "bicycle": ["brakes", "saddle", "gears", "chain"],
}
GENERIC_ASPECTS = ["price", "design", "packaging", "delivery"]
BRANDS = ["Brightware", "Nordel", "Kestra", "Halden", "Vimsy", "Olbrook"]
COLOURS = ["red", "blue", "green", "black", "white", "yellow", "grey", "orange"]


class Chooser:
    """A seeded random source that adds up the log-probability of every choice.

    Summed over a document, ``logp`` is the log-probability of the generator's
    derivation of that document; chapter 01 turns it into the entropy floor.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.logp = 0.0

    def choice(self, seq: Sequence[T]) -> T:
        """Pick one element uniformly."""
        if len(seq) == 0:
            raise ValueError("Chooser.choice got an empty sequence")
        self.logp -= math.log(len(seq))
        return seq[self.rng.randrange(len(seq))]

    def randint(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi], both ends included."""
        self.logp -= math.log(hi - lo + 1)
        return lo + self.rng.randrange(hi - lo + 1)

    def chance(self, p: float) -> bool:
        """True with probability p."""
        hit = self.rng.random() < p
        self.logp += math.log(p if hit else 1.0 - p)
        return hit

    def weighted(self, seq: Sequence[T], weights: Sequence[float]) -> T:
        """Pick one element with probability proportional to its weight."""
        total = float(sum(weights))
        r = self.rng.random() * total
        acc = 0.0
        for item, w in zip(seq, weights):
            acc += w
            if r < acc:
                self.logp += math.log(w / total)
                return item
        self.logp += math.log(weights[-1] / total)
        return seq[-1]

    def shuffled(self, seq: Sequence[T]) -> list[T]:
        """A uniformly random permutation (log n! added)."""
        items = list(seq)
        out = []
        while items:
            out.append(items.pop(self.randint(0, len(items) - 1)))
        return out

    def sample(self, seq: Sequence[T], k: int) -> list[T]:
        """k distinct elements in random order."""
        items = list(seq)
        return [items.pop(self.randint(0, len(items) - 1)) for _ in range(k)]


@dataclass(frozen=True)
class Person:
    """One inhabitant of the world and the four facts the course asks about."""

    name: str
    pronoun: str  # "she" or "he"
    town: str
    profession: str
    pet: str
    pet_name: str
    food: str

    @property
    def first(self) -> str:
        return self.name.split()[0]

    @property
    def possessive(self) -> str:
        return "her" if self.pronoun == "she" else "his"

    def fact(self, attribute: str) -> str:
        """The value of one of the four attributes: town, profession, pet, food."""
        if attribute not in FACT_ATTRIBUTES:
            raise ValueError(f"unknown attribute {attribute!r}; use one of {FACT_ATTRIBUTES}")
        return getattr(self, attribute)


FACT_ATTRIBUTES = ("town", "profession", "pet", "food")


@dataclass(frozen=True)
class Product:
    """A product that can be described and reviewed."""

    name: str  # e.g. "Nordel lamp"
    brand: str
    kind: str
    colour: str
    price: int
    aspects: tuple[str, ...]


@dataclass(frozen=True)
class World:
    """Everything that exists in the course world."""

    people: tuple[Person, ...]
    new_people: tuple[Person, ...]
    products: tuple[Product, ...]
    towns: tuple[str, ...] = field(default=tuple(TOWNS))

    def person(self, name: str) -> Person:
        """Look a person up by full name (corpus people and new_facts people)."""
        for p in self.people + self.new_people:
            if p.name == name:
                return p
        raise ValueError(f"no person called {name!r} in the course world")

    def residents(self, town: str) -> list[Person]:
        """The corpus people who live in a town."""
        return [p for p in self.people if p.town == town]


def _make_people(ch: Chooser, firsts: list[str], surnames: list[str], n: int) -> list[Person]:
    """n people with distinct first names (stories may use the first name alone)."""
    if n > len(firsts):
        raise ValueError(f"asked for {n} people but only {len(firsts)} first names exist")
    return [
        Person(
            name=f"{first} {ch.choice(surnames)}",
            pronoun="she" if first in FEMALE_NAMES else "he",
            town=ch.choice(TOWNS),
            profession=ch.choice(PROFESSIONS),
            pet=ch.choice(PETS),
            pet_name=ch.choice(PET_NAMES),
            food=ch.choice(FOODS),
        )
        for first in ch.sample(firsts, n)
    ]


def attribute_values(attribute: str, world: "World | None" = None) -> list[str]:
    """Every value an attribute can take in the world (all towns, all professions, ...)."""
    lists = {
        "town": list((world or make_world()).towns),
        "profession": PROFESSIONS,
        "pet": PETS,
        "food": FOODS,
    }
    if attribute not in lists:
        raise ValueError(f"unknown attribute {attribute!r}; use one of {FACT_ATTRIBUTES}")
    return sorted(lists[attribute])


@lru_cache(maxsize=1)
def make_world(seed: int = WORLD_SEED) -> World:
    """Build the (cached) course world from its seed."""
    ch = Chooser(seed)
    people = _make_people(ch, FIRST_NAMES, SURNAMES, 30)
    new_people = _make_people(ch, NEW_FIRST_NAMES, NEW_SURNAMES, 20)
    products = []
    for brand in BRANDS:
        for kind in ch.sample(sorted(PRODUCT_KINDS), 4):
            products.append(
                Product(
                    name=f"{brand} {kind}",
                    brand=brand,
                    kind=kind,
                    colour=ch.choice(COLOURS),
                    price=ch.randint(5, 90),
                    aspects=tuple(PRODUCT_KINDS[kind] + GENERIC_ASPECTS),
                )
            )
    return World(people=tuple(people), new_people=tuple(new_people), products=tuple(products))
