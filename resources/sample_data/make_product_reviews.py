#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Generate Tunebench's bundled sample dataset of product reviews.

Writes two JSON Lines files beside this script, in the OpenAI "messages" shape:

* ``product_reviews.jsonl`` - 240 training rows
* ``heldout_reviews.jsonl`` - 24 rows that never appear in the training file,
  for checking what the tuned model learned

Each row asks the model to read a short, synthetic customer review and answer with
one line of JSON naming the sentiment, the product and the aspects the review talks
about. The reviews are assembled from templates and phrase lists written for this
project; the output is fully determined by ``SEED``, so running the script again
gives byte-identical files. Standard library only.

    python resources/sample_data/make_product_reviews.py
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from pathlib import Path

SEED = 20240611
N_TRAIN = 240
N_HELDOUT = 24
# Per split: positive / negative / mixed, roughly 40/40/20.
QUOTAS = {
    "train": {"positive": 96, "negative": 96, "mixed": 48},
    "heldout": {"positive": 10, "negative": 10, "mixed": 4},
}
MIN_WORDS, MAX_WORDS = 15, 45

SYSTEM = "Read the product review and answer with one line of JSON: sentiment, product, aspects."

ASPECTS = [
    "price", "quality", "battery", "sound", "comfort", "size", "shipping",
    "durability", "ease of use", "design", "customer service", "performance",
]

HERE = Path(__file__).resolve().parent
TRAIN_PATH = HERE / "product_reviews.jsonl"
HELDOUT_PATH = HERE / "heldout_reviews.jsonl"

# --------------------------------------------------------------------------------------
# Vocabulary. Placeholders in phrases:
#   {it} {It} {is} {was} {has} {s} {es} {does} {this} {This} {p} {int} {long} {short}
# {s}/{es} are the third-person verb endings ("it works" / "they work").
# --------------------------------------------------------------------------------------

INTENSIFIERS = ["really", "very", "super", "pretty", "incredibly", "quite", "so", "", "", ""]
LONG_TIMES = ["six months", "a year", "eight months", "over a year", "four months", "two years"]
SHORT_TIMES = ["two weeks", "a month", "ten days", "a few days", "three weeks", "one week"]

# Aspects every product can have: {aspect: (positive phrases, negative phrases)}.
GENERIC = {
    "price": (
        ["{it} {was} a steal at this price",
         "the price is very fair for what you get",
         "{it} cost{s} about half of what the big brands charge",
         "you get a lot for the money",
         "the price was hard to beat",
         "{it} {is} a bargain at this price",
         "{it} {is} affordable without feeling like a compromise"],
        ["{it} {is} way overpriced for what {it} {is}",
         "{it} {is} not worth the money",
         "the price is far too high",
         "I paid way too much for {it}",
         "{it} {is} {int} expensive for something this basic",
         "at this price I expected a lot more"],
    ),
    "quality": (
        ["the build quality is {int} solid",
         "{it} feel{s} well made",
         "the materials feel premium",
         "the quality is excellent, with no rough edges anywhere",
         "{it} {is} clearly made from good materials",
         "you can tell the quality is there the moment you pick {it} up"],
        ["{it} feel{s} flimsy and plasticky",
         "the build quality is poor",
         "the quality is disappointing, with loose parts and rough edges",
         "the plastic feels thin and the finish is sloppy",
         "quality control is clearly lacking",
         "the quality is nowhere near what the photos suggest"],
    ),
    "durability": (
        ["{it} {has} held up perfectly after {long} of daily use",
         "still going strong after {long}",
         "{it} seem{s} built to last",
         "no signs of wear after {long}",
         "{it} {has} survived {long} of rough handling"],
        ["{it} started falling apart within {short}",
         "{it} {is} already showing wear after {short}",
         "{it} wore out {int} quickly",
         "{it} didn't even last {short}",
         "something snapped after {short}"],
    ),
    "design": (
        ["the design is clean and modern",
         "{it} look{s} {int} sleek",
         "I love the color",
         "{it} look{s} even better in person",
         "the matte finish looks classy",
         "the design is simple and elegant"],
        ["the design looks dated",
         "the color is nothing like the photos",
         "{it} look{s} {int} clunky",
         "the glossy finish shows every fingerprint",
         "the logo is huge and tacky",
         "the design is honestly ugly"],
    ),
    "size": (
        ["the size is just right",
         "{it} {is} nicely compact",
         "the size is perfect for me",
         "{it} {is} smaller than I expected, in a good way",
         "{it} take{s} up very little space"],
        ["{it} {is} much bulkier than I expected",
         "{it} {is} way too big",
         "the size is awkward",
         "{it} {is} tiny, much smaller than the listing suggests",
         "{it} take{s} up far too much space"],
    ),
    "shipping": (
        ["shipping was fast",
         "{it} arrived two days early",
         "{it} arrived {int} quickly and well packed",
         "delivery was quick",
         "{it} showed up the next day",
         "shipping was quick and the box was in perfect shape"],
        ["shipping took almost three weeks",
         "{it} arrived late and the box was crushed",
         "delivery was delayed twice",
         "the package showed up a week after the promised date",
         "shipping was painfully slow",
         "the courier lost {it} for five days"],
    ),
    "customer service": (
        ["customer service replaced {it} with no questions asked",
         "support answered my email within an hour",
         "the seller was {int} helpful when I had a question",
         "customer service was friendly and quick",
         "the support team sorted out my problem the same day"],
        ["customer service never replied to my emails",
         "support was rude and unhelpful",
         "the seller ignored my refund request",
         "I was on hold with customer service for an hour and got nowhere",
         "customer support just kept sending me the same canned reply"],
    ),
}

EASE = {
    "device": (
        ["{it} {is} {int} easy to use",
         "setup took about two minutes",
         "the controls are simple and intuitive",
         "{it} {is} straightforward to use right out of the box",
         "even my dad figured {it} out without the manual"],
        ["the controls are confusing",
         "setup was a nightmare",
         "{it} {is} awkward to use",
         "the instructions are useless and {it} took an hour to figure out",
         "the buttons are hard to use without looking"],
    ),
    "kitchen": (
        ["{it} {is} {int} easy to use",
         "{it} {is} easy to clean",
         "the controls are simple and intuitive",
         "cleanup takes about a minute",
         "{it} {is} simple enough that my kids use {it}"],
        ["{it} {is} a pain to clean",
         "the controls are confusing",
         "{it} {is} awkward to use",
         "cleaning {it} takes forever",
         "the manual is useless and the buttons are unlabeled"],
    ),
    "thing": (
        ["{it} {is} {int} easy to use",
         "{it} {is} simple to use with no learning curve",
         "{it} {is} easy to use straight away"],
        ["{it} {is} awkward to use",
         "{it} {is} fiddly and annoying to use",
         "{it} {is} harder to use than {it} should be"],
    ),
}

POWERED_DURABILITY_NEG = [
    "{it} stopped working after just {short}",
    "{it} died completely after {short}",
]

# Products. "aspects" lists the product-specific ones (battery, sound, comfort,
# performance, and overrides of generic ones); generic aspects are always allowed
# except those named in "skip".
PRODUCTS = [
    {"p": "headphones", "plural": True, "kind": "device", "powered": True, "aspects": {
        "battery": (["the battery lasts about thirty hours", "battery life is {int} impressive",
                     "I only charge them once a week"],
                    ["the battery dies after three hours", "battery life is {int} disappointing",
                     "the battery barely gets me through a workday"]),
        "sound": (["the sound is {int} clear with deep bass", "music sounds amazing on them",
                   "the sound is rich and detailed"],
                  ["the sound is tinny and flat", "the audio crackles at high volume",
                   "there is almost no bass in the sound"]),
        "comfort": (["they stay comfortable even after hours of wear", "the ear cushions are soft and comfortable"],
                    ["they get uncomfortable after an hour", "they squeeze my head and hurt my ears"]),
    }},
    {"p": "wireless earbuds", "plural": True, "kind": "device", "powered": True, "aspects": {
        "battery": (["the battery easily lasts a full workday", "the case charges them for days"],
                    ["the battery is dead after ninety minutes", "the left bud's battery drains twice as fast as the right"]),
        "sound": (["the sound is crisp and the bass is punchy", "calls and music both sound great"],
                  ["the sound is muddy", "the audio keeps cutting out and the sound is thin"]),
        "comfort": (["they are comfortable enough to sleep in", "they fit comfortably and never fall out"],
                    ["they hurt my ears after twenty minutes", "they never feel comfortable and keep slipping out"]),
    }},
    {"p": "bluetooth speaker", "plural": False, "kind": "device", "powered": True, "aspects": {
        "battery": (["the battery lasts a whole weekend", "battery life is {int} good"],
                    ["the battery dies halfway through a party", "the battery drains even when it's switched off"]),
        "sound": (["it gets {int} loud without distorting", "the sound fills the whole room"],
                  ["the sound distorts as soon as you turn it up", "it sounds like a cheap radio"]),
    }},
    {"p": "kettle", "plural": False, "kind": "kitchen", "powered": True, "aspects": {
        "performance": (["it boils a full jug in under three minutes", "it heats water {int} fast"],
                        ["it takes forever to boil", "it switches off before the water actually boils"]),
        "sound": (["it is nearly silent while heating", "it is much quieter than my old one"],
                  ["it rattles loudly every time it boils", "it is so noisy it wakes up the whole house"]),
    }},
    {"p": "running shoes", "plural": True, "kind": "thing", "powered": False, "skip": ["ease of use"], "aspects": {
        "comfort": (["they are {int} comfortable right out of the box", "the cushioning feels great on long runs"],
                    ["they gave me blisters on the first run", "they are stiff and uncomfortable, even after breaking them in"]),
        "size": (["they fit true to size", "the sizing is spot on"],
                  ["the sizing runs a full size small", "I had to exchange them because the sizing is way off"]),
        "durability": (["they still have plenty of tread after {long} of running", "they held up through {long} of trail runs"],
                        ["the soles started peeling after {short}", "the mesh tore after {short}"]),
    }},
    {"p": "phone case", "plural": False, "kind": "thing", "powered": False, "skip": ["ease of use"], "aspects": {
        "size": (["it fits my phone snugly", "the cutouts line up perfectly with my phone"],
                  ["it is too loose and the phone slides around inside", "the size is off and the buttons don't line up"]),
        "durability": (["it survived several drops onto concrete", "my phone survived a fall down the stairs thanks to it"],
                        ["it cracked the first time I dropped my phone", "the corners split after {short}"]),
    }},
    {"p": "desk lamp", "plural": False, "kind": "device", "powered": True, "aspects": {
        "performance": (["the light is bright and even", "the dimmer goes low enough for night reading"],
                        ["the light flickers constantly", "the light is too dim to read by"]),
    }},
    {"p": "backpack", "plural": False, "kind": "thing", "powered": False, "skip": ["ease of use"], "aspects": {
        "comfort": (["the padded straps make it comfortable all day", "it stays comfortable even fully loaded"],
                    ["the straps dig into my shoulders", "it is uncomfortable after ten minutes of walking"]),
        "size": (["there is plenty of room for a laptop and a change of clothes", "the size is perfect for day trips"],
                  ["it is too small to fit a 15-inch laptop", "the main pocket is way too small"]),
    }},
    {"p": "blender", "plural": False, "kind": "kitchen", "powered": True, "aspects": {
        "performance": (["it crushes ice with no trouble", "it makes perfectly smooth smoothies in seconds"],
                        ["it leaves chunks in every smoothie", "the motor struggles with frozen fruit"]),
        "sound": (["it is surprisingly quiet for a blender", "it is quieter than I expected"],
                  ["it is louder than a lawnmower", "the noise is unbearable"]),
    }},
    {"p": "keyboard", "plural": False, "kind": "device", "powered": True, "aspects": {
        "sound": (["the keys have a satisfying click", "the typing sound is {int} satisfying"],
                  ["the keys are so loud my coworkers complain", "the space bar rattles with a horrible sound"]),
        "comfort": (["it is comfortable to type on for hours", "the wrist rest makes long sessions comfortable"],
                    ["my wrists hurt after an hour of typing", "the angle is uncomfortable to type on"]),
        "performance": (["not a single missed keystroke so far", "the keys respond instantly"],
                        ["it drops keystrokes when I type fast", "some keys register twice"]),
    }},
    {"p": "wireless mouse", "plural": False, "kind": "device", "powered": True, "aspects": {
        "battery": (["the battery lasts for months", "one charge lasts me weeks"],
                    ["the battery needs charging every other day", "the battery dies in the middle of work"]),
        "comfort": (["it is comfortable in my hand all day", "the shape is comfortable for big hands"],
                    ["it is uncomfortable to hold for long", "my hand cramps up after using it"]),
        "performance": (["tracking is smooth and precise", "the sensor tracks perfectly even on glass"],
                        ["the cursor jumps around", "it lags and disconnects randomly"]),
    }},
    {"p": "office chair", "plural": False, "kind": "thing", "powered": False, "aspects": {
        "comfort": (["it is {int} comfortable even after eight hours", "my back no longer aches after long days"],
                    ["the seat is uncomfortable after an hour", "my back hurts more than it did with my old chair"]),
    }},
    {"p": "coffee maker", "plural": False, "kind": "kitchen", "powered": True, "aspects": {
        "performance": (["it brews a full pot in five minutes", "the coffee comes out hot and strong"],
                        ["the coffee comes out lukewarm", "it leaks water all over the counter when brewing"]),
        "sound": (["it is quiet enough to use while everyone sleeps", "it is nearly silent when brewing"],
                  ["it gurgles and hisses loudly", "it is so loud it wakes everyone up"]),
    }},
    {"p": "smartwatch", "plural": False, "kind": "device", "powered": True, "aspects": {
        "battery": (["the battery lasts almost a week", "battery life is {int} good, five days easily"],
                    ["the battery barely lasts a day", "the battery drains overnight"]),
        "comfort": (["it is comfortable enough to wear while sleeping", "the strap is soft and comfortable"],
                    ["the strap is uncomfortable and irritates my skin", "it is too uncomfortable to wear at night"]),
        "performance": (["step counting and heart rate are spot on", "the app syncs instantly"],
                        ["the heart rate readings are all over the place", "the screen lags every time I swipe"]),
    }},
    {"p": "water bottle", "plural": False, "kind": "thing", "powered": False, "aspects": {
        "performance": (["it keeps water cold for a full day", "ice is still there the next morning"],
                        ["it leaks in my bag", "drinks go warm within an hour"]),
    }},
    {"p": "air fryer", "plural": False, "kind": "kitchen", "powered": True, "aspects": {
        "performance": (["it cooks fries perfectly crisp", "it heats up fast and cooks evenly"],
                        ["it cooks everything unevenly", "the food comes out soggy"]),
        "sound": (["the fan is quiet", "it is quieter than my microwave"],
                  ["the fan is {int} loud", "it beeps loudly and the fan roars"]),
    }},
    {"p": "yoga mat", "plural": False, "kind": "thing", "powered": False, "skip": ["ease of use"], "aspects": {
        "comfort": (["it is thick and comfortable on my knees", "the cushioning is comfortable"],
                    ["it is too thin and uncomfortable on my knees", "it is uncomfortable for floor work"]),
        "performance": (["the grip is excellent even in hot yoga", "my hands never slip on it"],
                        ["I slip all over it once I start sweating", "the grip is terrible"]),
    }},
    {"p": "electric toothbrush", "plural": False, "kind": "device", "powered": True, "aspects": {
        "battery": (["the battery lasts two weeks between charges", "the battery life is {int} long"],
                    ["the battery dies after three days", "the battery no longer holds a charge"]),
        "performance": (["my teeth feel cleaner than ever", "it cleans far better than a manual brush"],
                        ["it barely cleans anything", "the motor is weak and my teeth don't feel clean"]),
    }},
    {"p": "power bank", "plural": False, "kind": "device", "powered": True, "aspects": {
        "battery": (["the battery charges my phone almost three times", "the battery capacity is {int} generous"],
                    ["the battery barely gives my phone one full charge", "the battery capacity is nowhere near what's advertised"]),
    }},
    {"p": "cordless vacuum", "plural": False, "kind": "device", "powered": True, "aspects": {
        "battery": (["the battery easily does the whole flat", "battery life is {int} good on the normal setting"],
                    ["the battery dies after ten minutes", "the battery runs out before I finish one room"]),
        "performance": (["the suction is {int} strong", "it picks up dog hair from the carpet easily"],
                        ["the suction is weak", "it just pushes crumbs around"]),
        "sound": (["it is quiet enough to use at night", "it is much quieter than my old vacuum"],
                  ["it is so loud the dog hides", "the high-pitched whine is unbearable"]),
    }},
    {"p": "rain jacket", "plural": False, "kind": "thing", "powered": False, "skip": ["ease of use"], "aspects": {
        "comfort": (["it is light and comfortable to wear", "it stays comfortable on long hikes"],
                    ["it is stiff and uncomfortable", "it is uncomfortable around the shoulders"]),
        "performance": (["it kept me dry in a proper downpour", "it is {int} waterproof"],
                        ["it soaked through in light rain", "it is not waterproof at all"]),
    }},
    {"p": "frying pan", "plural": False, "kind": "kitchen", "powered": False, "aspects": {
        "performance": (["it heats evenly and eggs slide right off", "the nonstick coating works perfectly"],
                        ["everything sticks to it", "it heats unevenly and burns the middle"]),
    }},
    {"p": "monitor", "plural": False, "kind": "device", "powered": True, "aspects": {
        "performance": (["the picture is {int} sharp", "no dead pixels and text looks crisp"],
                        ["there is noticeable backlight bleed", "the screen flickers at high refresh rates"]),
    }},
    {"p": "webcam", "plural": False, "kind": "device", "powered": True, "aspects": {
        "performance": (["the picture is sharp even in low light", "the autofocus is fast"],
                        ["the picture is grainy", "the image freezes in every call"]),
        "sound": (["the microphone picks up my voice clearly", "the built-in mic sounds great"],
                  ["the microphone sounds muffled", "the mic picks up every background sound"]),
    }},
    {"p": "hair dryer", "plural": False, "kind": "device", "powered": True, "aspects": {
        "performance": (["it dries my hair in half the time", "the airflow is {int} strong"],
                        ["it takes forever to dry my hair", "the airflow is weak"]),
        "sound": (["it is surprisingly quiet", "it is much quieter than my old one"],
                  ["it is {int} loud", "it sounds like a jet engine"]),
    }},
    {"p": "e-reader", "plural": False, "kind": "device", "powered": True, "aspects": {
        "battery": (["the battery lasts for weeks", "the battery life is {int} good"],
                    ["the battery drains in two days", "the battery life is nothing like advertised"]),
        "performance": (["pages turn instantly", "the screen is crisp and easy on the eyes"],
                        ["page turns are slow", "the screen ghosts badly"]),
    }},
    {"p": "toaster", "plural": False, "kind": "kitchen", "powered": True, "aspects": {
        "performance": (["it browns bread evenly", "it toasts perfectly every time"],
                        ["it burns one side and leaves the other pale", "the toast comes out uneven"]),
    }},
    {"p": "suitcase", "plural": False, "kind": "thing", "powered": False, "aspects": {
        "size": (["it fits in the overhead bin with room to spare", "it is roomy enough for a week of clothes"],
                  ["it is too big for most carry-on limits", "it barely holds three days of clothes"]),
        "durability": (["it survived six flights without a scratch", "the wheels still roll smoothly after {long}"],
                        ["a wheel broke off on the second trip", "the handle snapped after {short}"]),
    }},
    {"p": "tent", "plural": False, "kind": "thing", "powered": False, "aspects": {
        "size": (["there is enough room for two adults and our gear", "the size is great for a family of three"],
                  ["it claims to sleep four but barely fits two", "it is much smaller inside than advertised"]),
        "performance": (["it stayed dry through a whole night of rain", "it stayed put in strong wind"],
                        ["it leaked as soon as it started raining", "it collapsed in moderate wind"]),
    }},
    {"p": "umbrella", "plural": False, "kind": "thing", "powered": False, "aspects": {
        "durability": (["it has survived some {int} windy days", "it never flips inside out, even in storms"],
                        ["it flipped inside out and snapped on the first windy day", "two of the spokes bent within {short}"]),
        "size": (["it folds small enough to fit in my bag", "it is compact when folded"],
                  ["it is too small to keep my shoulders dry", "it is bulky even when folded"]),
    }},
    {"p": "rice cooker", "plural": False, "kind": "kitchen", "powered": True, "aspects": {
        "performance": (["the rice comes out fluffy every time", "it cooks rice perfectly"],
                        ["the rice burns on the bottom", "the rice comes out mushy"]),
    }},
    {"p": "laptop stand", "plural": False, "kind": "thing", "powered": False, "aspects": {
        "comfort": (["my neck feels so much more comfortable now", "it makes working on a laptop comfortable"],
                    ["the angle is uncomfortable for typing", "it is uncomfortable to type at this height"]),
    }},
]

# Weight of each aspect when choosing; product-specific aspects are the interesting ones.
ASPECT_WEIGHTS = {
    "price": 1.0, "quality": 1.0, "durability": 1.0, "design": 0.9, "size": 0.8,
    "ease of use": 0.9, "shipping": 0.6, "customer service": 0.5,
    "battery": 2.0, "sound": 2.0, "comfort": 2.0, "performance": 2.0,
}

WHEN = ["last month", "a few weeks ago", "in the spring", "back in January", "two weeks ago",
        "last week", "over the holidays", "for my birthday", "to replace my old {one}"]

OPENERS = {
    "neutral": [
        "I bought {this} {p} {when}.",
        "Got {this} {p} {when}.",
        "Been using {this} {p} for {short} now.",
        "Picked up {this} {p} {when}.",
        "My partner got me {this} {p} {when}.",
        "Ordered {this} {p} {when}.",
        "Bought {this} {p} as a gift for my dad.",
        "I've had {this} {p} for a while now.",
        "Quick review of {this} {p}.",
        "Using {this} {p} every day since {when2}.",
    ],
    "positive": [
        "Really happy with {this} {p}.",
        "Love {this} {p}!",
        "{This} {p} {is} {int} great.",
        "Best {p} I've owned.",
        "Five stars for {this} {p}.",
        "So glad I went with {this} {p}.",
        "{This} {p} exceeded my expectations.",
        "Pleasantly surprised by {this} {p}.",
        "Absolutely love {this} {p}.",
    ],
    "negative": [
        "Really disappointed with {this} {p}.",
        "Do not buy {this} {p}.",
        "{This} {p} {is} a letdown.",
        "Regret buying {this} {p}.",
        "Worst {p} I've ever bought.",
        "I wanted to like {this} {p}.",
        "{This} {p} {was} a waste.",
        "Not impressed with {this} {p} at all.",
        "One star for {this} {p}.",
    ],
    "mixed": [
        "Mixed feelings about {this} {p}.",
        "{This} {p} {is} okay, I guess.",
        "Not sure what to think of {this} {p}.",
        "{This} {p} {is} good in some ways and bad in others.",
        "Three stars for {this} {p}.",
        "{This} {p} {is} a bit of a mixed bag.",
        "Some good, some bad with {this} {p}.",
    ],
}

# Leads that carry the product into the first body sentence: "{lead}, and {body}".
LEADS = [
    "Bought {this} {p} {when}",
    "Got {this} {p} {when}",
    "I've been using {this} {p} for {short}",
    "I ordered {this} {p} {when}",
    "Had {this} {p} for {short} now",
    "I picked up {this} {p} on a friend's recommendation",
    "My sister talked me into {this} {p}",
]

# Closing sentences that name the product.
VERDICT_CLOSERS = {
    "positive": ["Overall {this} {p} {is} {int} good.", "Overall {a}great {p}.",
                 "All in all, {this} {p} {is} a keeper.", "{This} {p} {is} a solid buy."],
    "negative": ["Overall {this} {p} {is} a disappointment.", "I would not recommend {this} {p}.",
                 "All in all, {this} {p} {is} going back.", "Skip {this} {p}."],
    "mixed": ["Overall {this} {p} {is} just okay.", "All in all, {an}average {p}.",
              "{This} {p} {is} fine, but not great.", "Overall {a}decent {p} with flaws."],
}

CLOSERS = {
    "positive": ["Would buy again.", "Highly recommend!", "No complaints.", "10/10.",
                 "Already recommended {it} to friends.", "Very happy.", "Love {it}.",
                 "Couldn't be happier."],
    "negative": ["Returning {it}.", "Avoid.", "Sending {it} back.", "Would not recommend.",
                 "One star.", "Very disappointed.", "Never again.", "Not buying from this brand again."],
    "mixed": ["Three stars.", "{ItIs} fine, not great.", "Keeping {it}, but with reservations.",
              "Might buy again, might not.", "Decent, but not perfect.", "{ItIs} okay overall."],
}

TYPOS = [
    ("definitely", "definately"), ("received", "recieved"), ("really", "realy"),
    ("don't", "dont"), ("didn't", "didnt"), ("doesn't", "doesnt"), ("I've", "ive"),
    ("a lot", "alot"), ("which", "wich"), ("there is", "theres"), ("until", "untill"),
    ("comfortable", "comfortible"), ("wouldn't", "wouldnt"),
    ("couldn't", "couldnt"), ("it's", "its"),
]


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seen: set[str] = set()
        self._product_queue: dict[str, list[int]] = {}
        self._timeless = False

    # ---------------------------------------------------------------- helpers
    def _next_product(self, sentiment: str) -> dict:
        queue = self._product_queue.setdefault(sentiment, [])
        if not queue:
            order = list(range(len(PRODUCTS)))
            self.rng.shuffle(order)
            queue.extend(order)
        return PRODUCTS[queue.pop()]

    def _grammar(self, prod: dict) -> dict[str, str]:
        pl = prod["plural"]
        p = prod["p"]
        return {
            "p": p,
            "a": "" if pl else "a ",
            "an": "" if pl else "an ",
            "it": "they" if pl else "it",
            "It": "They" if pl else "It",
            "ItIs": "They're" if pl else "It's",
            "is": "are" if pl else "is",
            "was": "were" if pl else "was",
            "has": "have" if pl else "has",
            "does": "do" if pl else "does",
            "s": "" if pl else "s",
            "es": "" if pl else "es",
            "this": "these" if pl else "this",
            "one": "pair" if pl else "one",
            "This": "These" if pl else "This",
        }

    def _fill(self, template: str, gram: dict[str, str]) -> str:
        rng = self.rng
        values = dict(gram)
        values["int"] = rng.choice(INTENSIFIERS)
        values["long"] = rng.choice(LONG_TIMES)
        values["short"] = rng.choice(SHORT_TIMES)
        values["when"] = rng.choice(WHEN).format(**gram)
        values["when2"] = rng.choice(["last month", "January", "the spring", "my birthday"])
        text = template.format(**values)
        return re.sub(r" {2,}", " ", text)

    def _pick(self, templates: list[str]) -> str:
        """A random template; when the review talks about durability, none that says
        how long the reviewer has owned the product (it would contradict the clause)."""
        if self._timeless:
            templates = [t for t in templates if not re.search(r"\{(when|when2|short|long)\}", t)]
        return self.rng.choice(templates)

    def _aspect_pool(self, prod: dict, aspect: str) -> tuple[list[str], list[str]]:
        pos: list[str] = []
        neg: list[str] = []
        if aspect in prod["aspects"]:
            # Product-specific phrases, written with the product's own pronoun.
            ppos, pneg = prod["aspects"][aspect]
            pos += ppos
            neg += pneg
        # Generic size and durability phrases would not fit products that override them
        # (a tent's size is its floor space); other generic aspects add to the mix.
        overridden = aspect in ("size", "durability") and aspect in prod["aspects"]
        if aspect in GENERIC and not overridden:
            gpos, gneg = GENERIC[aspect]
            pos += gpos
            neg += gneg
        if aspect == "durability" and prod["powered"]:
            neg += POWERED_DURABILITY_NEG
        if aspect == "ease of use":
            epos, eneg = EASE[prod["kind"]]
            pos += epos
            neg += eneg
        return pos, neg

    def _available_aspects(self, prod: dict) -> list[str]:
        skip = prod.get("skip", [])
        out = [a for a in ASPECTS if a not in skip and (a in GENERIC or a == "ease of use" or a in prod["aspects"])]
        return out

    def _pick_aspects(self, prod: dict, n: int) -> list[str]:
        avail = self._available_aspects(prod)
        chosen: list[str] = []
        while len(chosen) < n:
            weights = [ASPECT_WEIGHTS[a] for a in avail]
            a = self.rng.choices(avail, weights=weights)[0]
            chosen.append(a)
            avail.remove(a)
        return chosen

    def _clause(self, prod: dict, gram: dict[str, str], aspect: str, positive: bool) -> str:
        pos, neg = self._aspect_pool(prod, aspect)
        return self._fill(self.rng.choice(pos if positive else neg), gram)

    @staticmethod
    def _cap(s: str) -> str:
        return s[:1].upper() + s[1:]

    @staticmethod
    def _and_list(items: list[str]) -> str:
        if len(items) == 1:
            return items[0]
        if len(items) == 2:
            return f"{items[0]} and {items[1]}"
        return ", ".join(items[:-1]) + ", and " + items[-1]

    # ---------------------------------------------------------------- body
    def _body_same(self, clauses: list[str], sentiment: str) -> list[str]:
        """Sentences for clauses that share one polarity."""
        rng = self.rng
        cap = self._cap
        n = len(clauses)
        if n == 1:
            c = clauses[0]
            forms = [f"{cap(c)}.", f"{cap(c)}!" if sentiment == "positive" else f"{cap(c)}.",
                     f"Honestly, {c}.", f"I have to say {c}."]
            if sentiment == "negative":
                forms += [f"Sadly, {c}.", f"Unfortunately {c}."]
            return [rng.choice(forms)]
        if n == 2:
            a, b = clauses
            forms = [
                [f"{cap(a)} and {b}."],
                [f"{cap(a)}, plus {b}."],
                [f"{cap(a)}.", f"{cap(b)}."],
            ]
            if sentiment == "positive":
                forms += [[f"{cap(a)}, and {b} too."], [f"{cap(a)}.", f"On top of that, {b}."],
                          [f"{cap(a)}, and best of all, {b}."]]
            else:
                forms += [[f"{cap(a)}, and on top of that {b}."], [f"{cap(a)}.", f"Also, {b}."],
                          [f"First, {a}.", f"Second, {b}."]]
            return rng.choice(forms)
        a, b, c = clauses
        forms = [
            [f"{cap(a)}, {b}, and {c}."],
            [f"{cap(a)} and {b}.", f"{cap(c)}."],
            [f"{cap(a)}.", f"{cap(b)}, and {c}."],
        ]
        if sentiment == "negative":
            forms.append([f"{cap(a)}, {b}, and to top it off, {c}."])
        else:
            forms.append([f"{cap(a)}, {b}, and {c}, what more could you want?"])
        return rng.choice(forms)

    def _body_mixed(self, pos: list[str], neg: list[str]) -> list[str]:
        rng = self.rng
        cap = self._cap
        P = self._and_list(pos)
        N = self._and_list(neg)
        forms = [
            [f"{cap(P)}, but {N}."],
            [f"{cap(N)}, though {P}."],
            [f"{cap(P)}.", f"Unfortunately, {N}."],
            [f"On the plus side, {P}.", f"On the downside, {N}."],
            [f"{cap(P)}.", f"The problem is that {N}."],
            [f"{cap(P)}; sadly {N}."],
            [f"While {P}, {N}."],
            [f"{cap(N)}.", f"That said, {P}."],
            [f"The good: {P}.", f"The bad: {N}."],
        ]
        return rng.choice(forms)

    # ---------------------------------------------------------------- review
    def review(self, sentiment: str) -> tuple[str, dict]:
        rng = self.rng
        prod = self._next_product(sentiment)
        gram = self._grammar(prod)
        if sentiment == "mixed":
            n = rng.choices([2, 3], weights=[0.7, 0.3])[0]
        else:
            n = rng.choices([1, 2, 3], weights=[0.35, 0.45, 0.2])[0]
        aspects = self._pick_aspects(prod, n)
        self._timeless = "durability" in aspects

        if sentiment == "mixed":
            n_pos = rng.randint(1, n - 1)
            flags = [True] * n_pos + [False] * (n - n_pos)
            rng.shuffle(flags)
        else:
            flags = [sentiment == "positive"] * n
        clauses = {a: self._clause(prod, gram, a, f) for a, f in zip(aspects, flags)}
        if sentiment == "mixed":
            pos = [clauses[a] for a, f in zip(aspects, flags) if f]
            neg = [clauses[a] for a, f in zip(aspects, flags) if not f]
            body = self._body_mixed(pos, neg)
        else:
            body = self._body_same([clauses[a] for a in aspects], sentiment)

        style = rng.random()
        if style < 0.40:
            # Opener naming the product, body, maybe a closer.
            kind = rng.choice(["neutral", sentiment, sentiment])
            sentences = [self._fill(self._pick(OPENERS[kind]), gram)] + body
            if len(sentences) < 3 and rng.random() < 0.5:
                sentences.append(self._fill(self._pick(CLOSERS[sentiment]), gram))
        elif style < 0.65 and len(body) == 1 and sentiment != "mixed" and (n == 1 or ", and" not in body[0]):
            # "Bought this kettle last month, and it boils fast."
            first = body[0]
            lead = self._fill(self._pick(LEADS), gram)
            sentences = [f"{lead}, and {first[0].lower()}{first[1:]}"]
            if rng.random() < 0.6:
                sentences.append(self._fill(self._pick(CLOSERS[sentiment]), gram))
        else:
            # Body first, then a closing sentence that names the product.
            sentences = body + [self._fill(self._pick(VERDICT_CLOSERS[sentiment]), gram)]
            if len(sentences) > 3:
                sentences = [self._fill(self._pick(OPENERS[sentiment]), gram)] + body

        text = " ".join(sentences)
        # List the aspects in the order the review mentions them.
        lower = text.lower()
        aspects = sorted(aspects, key=lambda a: lower.find(clauses[a].lower()))
        assert all(lower.find(clauses[a].lower()) >= 0 for a in aspects), text
        text = self._roughen(text)
        verdict = {"sentiment": sentiment, "product": prod["p"], "aspects": aspects}
        return text, verdict

    def _roughen(self, text: str) -> str:
        """Occasional real-world sloppiness: typos, lowercase, missing final stop."""
        rng = self.rng
        if rng.random() < 0.15:
            candidates = [(a, b) for a, b in TYPOS if re.search(rf"\b{re.escape(a)}\b", text)]
            if candidates:
                a, b = rng.choice(candidates)
                text = re.sub(rf"\b{re.escape(a)}\b", b, text, count=1)
        if rng.random() < 0.08:
            text = text.lower()
        if rng.random() < 0.06 and text.endswith("."):
            text = text[:-1]
        return text

    def unique_review(self, sentiment: str) -> tuple[str, dict]:
        for _ in range(1000):
            text, verdict = self.review(sentiment)
            words = len(text.split())
            sentences = len(re.findall(r"[.!?](?:\s|$)", text + " ")) or 1
            key = text.lower()
            if not (MIN_WORDS <= words <= MAX_WORDS) or sentences > 3 or key in self.seen:
                continue
            if verdict["product"] not in key:
                continue
            self.seen.add(key)
            return text, verdict
        raise RuntimeError("could not generate a fresh review")


def _row(review: str, verdict: dict) -> dict:
    answer = json.dumps(verdict, separators=(", ", ": "))
    return {"messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": review},
        {"role": "assistant", "content": answer},
    ]}


def _split(gen: Generator, quotas: dict[str, int]) -> list[dict]:
    labels = [s for s, k in quotas.items() for _ in range(k)]
    gen.rng.shuffle(labels)
    return [_row(*gen.unique_review(s)) for s in labels]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; this is shipped data
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def main() -> None:
    gen = Generator(SEED)
    # Held-out rows are drawn first; the shared "seen" set keeps them out of training.
    heldout = _split(gen, QUOTAS["heldout"])
    train = _split(gen, QUOTAS["train"])
    assert len(train) == N_TRAIN and len(heldout) == N_HELDOUT
    _write_jsonl(TRAIN_PATH, train)
    _write_jsonl(HELDOUT_PATH, heldout)
    print(f"wrote {len(train)} rows to {TRAIN_PATH.name} and {len(heldout)} rows to {HELDOUT_PATH.name}")


if __name__ == "__main__":
    main()
