"""The demo persona's word banks: recurring topics, questions and first-person sentences.

The demo profile is generated from these banks so that its text is varied but coherent: one
person ("demo") who lives in Boulder, writes software for a climate-data startup, gardens,
cycles, cooks, learns Spanish and walks a border collie called Pepper. A tiny tokenizer or
language model trained on it picks up these recurring names, places and habits.

Besides the steady topics, every calendar month has its own chapter (:data:`MONTH_CHAPTERS`): a
trip, a wedding, a launch at work, a new kitten, each with its own people, places and words, as
a life has. Those chapters come and go, so a model trained only on the newest month forgets the
older ones, and the old probe of a monthly run shows it.
"""

from __future__ import annotations

SLOTS: dict[str, tuple[str, ...]] = {
    "veg": ("tomatoes", "basil", "kale", "snap peas", "jalapeños", "zucchini", "carrots", "garlic",
            "chard", "cucumbers"),
    "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "num": ("two", "three", "four", "five", "six", "seven", "ten", "twelve"),
    "friend": ("Maya", "Jonah", "Priya", "Luis", "Ren", "Tomás", "Keiko"),
    "trail": ("Flagstaff Road", "the Left Hand Canyon loop", "Sunshine Canyon", "the Boulder Creek path",
              "Lefthand to Ward", "the Switzerland Trail"),
    "dish": ("green chile stew", "dal with spinach", "sourdough pizza", "black bean tacos",
             "miso ramen", "shakshuka", "roasted squash soup", "pesto pasta"),
    "book": ("The Dispossessed", "A Psalm for the Wild-Built", "Piranesi", "The Left Hand of Darkness",
             "Project Hail Mary", "Klara and the Sun", "The Overstory"),
    "tool": ("the ESP32 board", "the soil moisture probe", "the Grafana dashboard", "the MQTT broker",
             "the Raspberry Pi", "the relay for the drip valve"),
    "work": ("the ingestion pipeline", "the forecast API", "the data quality checks",
             "the flaky integration tests", "the on-call rotation", "the Parquet export",
             "the sprint planning doc"),
    "feeling": ("tired but content", "restless", "calm", "a little anxious", "grateful",
                "scattered", "energized", "quietly proud"),
    "time": ("this morning", "after lunch", "late last night", "on the ride home",
             "before standup", "around sunset"),
    "spanish": ("the subjunctive", "ser versus estar", "the preterite", "por and para",
                "rolling my r's", "listening to podcasts at 0.8x speed"),
    "chord": ("F major", "the barre chords", "a fingerpicking pattern", "Blackbird",
              "the B minor shape"),
}

TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "garden": {
        "questions": (
            "How is the garden doing?", "What should I plant next week?",
            "Did the {veg} survive the frost?", "Any tips for watering in this heat?",
            "Why are the {veg} leaves turning yellow?", "What did you harvest today?",
        ),
        "sentences": (
            "The {veg} are finally coming in, about {num} handfuls this week.",
            "I moved the drip line closer to the {veg} because the soil kept drying out by noon.",
            "Pepper dug up a corner of the raised bed again, so I put the wire fence back.",
            "Sometimes I think the garden is really just an excuse to be outside before work.",
            "The frost on {day} got the {veg}, but the garlic under the straw looks fine.",
            "I want to try saving seeds from the {veg} this year instead of buying new packets.",
            "Compost is finally warm in the middle, which means the balance of greens and browns is right.",
            "Watering at six in the morning uses less water than at dusk, the sensor logs prove it.",
            "Next season I will plant fewer {veg} and more things we actually eat every week.",
            "Maya came by and left with a bag of {veg} and a jar of pesto.",
            "The soil test said the beds need more nitrogen, so I'm adding blood meal in spring.",
            "Solution for the aphids was boring: a hard spray of water every other day.",
        ),
    },
    "greenhouse": {
        "questions": (
            "How is the greenhouse sensor project going?", "Can you help me debug the moisture readings?",
            "What broke in the greenhouse setup?", "Should I switch from MQTT to plain HTTP?",
            "What's next for the sensor project?",
        ),
        "sentences": (
            "I rewired {tool} and the readings stopped jumping around.",
            "The moisture numbers drift by about {num} percent whenever the heater kicks on.",
            "I finally got {tool} to publish every minute without dropping messages.",
            "The dashboard now shows soil moisture next to the weather forecast, which is oddly satisfying.",
            "Half of the bugs were a loose ground wire, the other half were my own code.",
            "I should write down how {tool} is configured before I forget all of it.",
            "Sometimes the simplest fix is a longer cable and a better power supply.",
            "The drip valve opened at three in the morning because of a timezone bug in my schedule.",
            "I'm thinking about open-sourcing the firmware once the config is less embarrassing.",
            "Calibrating the probe in a cup of water and a cup of dry soil took the whole evening.",
        ),
    },
    "work": {
        "questions": (
            "How was work today?", "What are you working on this sprint?",
            "Can you summarize the standup?", "How do I explain the forecast delay to the team?",
            "What went wrong with {work}?", "Should I take the on-call swap?",
        ),
        "sentences": (
            "Most of the day went into {work}, which is slower than I hoped.",
            "We found the bug in {work}: a timestamp parsed as local time instead of UTC.",
            "I paired with {friend} on {work} and we cut the runtime by half.",
            "The retro was honest for once, people admitted the deadlines were unrealistic.",
            "I keep saying yes to small requests and then the real work happens after six.",
            "Writing the design doc for {work} clarified more than a week of meetings did.",
            "On-call was quiet except for one alert at two in the morning that fixed itself.",
            "I want to spend less time in Slack and more time reading code.",
            "The forecast API is finally under two hundred milliseconds at the ninety-ninth percentile.",
            "Our data quality checks caught a broken upstream feed before customers noticed.",
            "Someone on the team asked for a walkthrough of {work}, so I recorded a short video.",
            "I'm proud of how we handled the outage, calm and clear and well documented.",
        ),
    },
    "cycling": {
        "questions": (
            "How was the ride?", "Which route should I take on {day}?",
            "Is it too cold to ride tomorrow?", "How do I get faster on climbs?",
            "Did you ride {trail} again?",
        ),
        "sentences": (
            "I rode {trail} {time} and the climb felt easier than last month.",
            "The wind on the way back was brutal, I averaged maybe twelve miles an hour.",
            "I finally replaced the chain and the shifting is silent again.",
            "Riding with {friend} always turns into a race on the last hill.",
            "Sometimes the best rides are the slow ones where I stop to look at the foothills.",
            "My legs were heavy, probably from not sleeping enough this week.",
            "I saw two deer and a fox on {trail}, which made the cold worth it.",
            "The plan is to ride to Ward before the snow closes the canyon.",
            "I need new winter gloves, my fingers went numb after forty minutes.",
            "A long easy ride does more for my mood than any productivity trick.",
        ),
    },
    "cooking": {
        "questions": (
            "What should I cook tonight?", "How do I make {dish}?", "What did you eat today?",
            "Any ideas for meal prep this week?", "Is the sourdough starter still alive?",
        ),
        "sentences": (
            "I made {dish} and there are leftovers for at least {num} lunches.",
            "The sourdough starter is alive again after a week of neglect in the fridge.",
            "Cooking for {friend} on {day} was the best part of the week.",
            "I roasted the last of the {veg} with garlic and too much olive oil.",
            "Meal prep on Sunday saves me from ordering takeout three times a week.",
            "The trick with {dish} is patience: low heat and more time than the recipe says.",
            "I burned the first batch of tortillas and ate them anyway.",
            "Soup season has officially started, which makes me happy in a quiet way.",
            "I want to learn one new dish a month, this month it is {dish}.",
        ),
    },
    "spanish": {
        "questions": (
            "How is the Spanish going?", "Can you quiz me on {spanish}?",
            "What did you learn in Spanish class?", "How do I stay motivated with Spanish?",
        ),
        "sentences": (
            "Today's Spanish lesson was all about {spanish}, and I still mix it up.",
            "I had a ten minute conversation with {friend} in Spanish without switching to English.",
            "My streak is at {num} weeks, mostly thanks to doing lessons on the bus.",
            "Sometimes I understand a whole podcast episode and sometimes nothing at all.",
            "Tomás says my accent sounds like a polite robot, which is fair.",
            "I wrote a short diary entry in Spanish and only made a few mistakes.",
            "Learning a language as an adult is humbling in a way I did not expect.",
            "The plan is to visit Oaxaca next year and order food without pointing.",
        ),
    },
    "pepper": {
        "questions": (
            "How is Pepper?", "Did Pepper behave at the park?", "Should I sign Pepper up for agility?",
            "Why is Pepper barking at night?",
        ),
        "sentences": (
            "Pepper chased a squirrel for ten minutes and then fell asleep on my feet.",
            "We walked the long loop along the creek {time} and Pepper refused to leave the water.",
            "Pepper learned to ring the bell by the door, which is cute until three in the morning.",
            "The vet said Pepper is healthy but could lose a pound or two.",
            "Border collies need a job, so I hide treats around the yard for Pepper to find.",
            "Pepper barked at the delivery driver again, we are working on it.",
            "Sometimes Pepper just stares at me until I close the laptop and go outside.",
            "Agility class on {day} was chaos, Pepper loved the tunnel and ignored the weave poles.",
        ),
    },
    "reading": {
        "questions": (
            "What are you reading?", "Did you finish {book}?", "Any book recommendations?",
            "What did you think of the ending?",
        ),
        "sentences": (
            "I'm halfway through {book} and I keep underlining sentences.",
            "{book} made me think about how much of my life runs on habit.",
            "I read for an hour {time} instead of scrolling, and slept better.",
            "The book club picked {book}, and {friend} already hates the main character.",
            "Science fiction is how I think about the future without getting anxious about it.",
            "I want to reread {book} in Spanish once my vocabulary catches up.",
            "The ending of {book} was quieter than I expected, and that was the point.",
        ),
    },
    "music": {
        "questions": (
            "How is guitar practice going?", "Can you help me with {chord}?",
            "Did you play anything new this week?",
        ),
        "sentences": (
            "I practiced {chord} for twenty minutes and my fingertips are sore.",
            "Playing guitar after work is the only time my brain stops planning.",
            "{friend} and I tried to play a song together and laughed more than we played.",
            "I recorded myself playing {chord} and it sounded better than it felt.",
            "Some days the guitar just sits in the corner and makes me feel guilty.",
        ),
    },
}

REFLECTION_OPENERS: tuple[str, ...] = (
    "Looking back at this week, I notice a pattern.",
    "I keep coming back to one question.",
    "Something about today deserves a closer look.",
    "What strikes me is how little the big plans mattered.",
    "I have been thinking about balance again.",
    "Writing this down helps me see it more clearly.",
)
REFLECTION_CLOSERS: tuple[str, ...] = (
    "Next week I want to protect my mornings and say no to one thing.",
    "I think the lesson is to do fewer things with more attention.",
    "Maybe the point is not to optimize everything but to notice it.",
    "I am more patient than I was a year ago, and that counts for something.",
    "Tomorrow I will start with the garden and leave the laptop closed until nine.",
    "It is fine to be unfinished; most good things are.",
)
DREAM_SENTENCES: tuple[str, ...] = (
    "I dreamed the greenhouse was floating above the foothills and Pepper was steering it.",
    "In the dream I was giving a talk in Spanish and every slide was a picture of {veg}.",
    "There was a train made of bicycles going up {trail}, and {friend} was the conductor.",
    "The office was underwater but everyone kept working as if nothing had changed.",
    "I was reading {book} but the words kept rearranging themselves into code.",
    "My grandmother was in the kitchen making {dish} and telling me to slow down.",
    "The sensors in the garden started talking to each other about the weather.",
    "I was late for a flight to Oaxaca and could not find my shoes or my passport.",
    "The whole town was covered in snow except our backyard, which was summer.",
)
INNER_SENTENCES: tuple[str, ...] = (
    "Why do I keep postponing the dentist appointment?",
    "I should call Maya this weekend, it has been too long.",
    "Am I actually tired or just bored?",
    "Maybe the sensor project needs a deadline to stop growing.",
    "I wonder if I would be happier with a four day week.",
    "Note to self: drink water before coffee, not after.",
    "Is it the work I dislike or the meetings around it?",
    "I feel {feeling} today and I am not sure why.",
    "Sometimes I think I plan so much because planning feels like progress.",
    "Do I want to learn Spanish or do I want to have learned Spanish?",
    "Remember to thank {friend} for the help with {work}.",
)
SHORT_EXCHANGES: tuple[tuple[str, str], ...] = (
    ("thanks", "Anytime."),
    ("ok", "Sounds good."),
    ("good morning", "Morning! Coffee first, then the garden."),
    ("good night", "Night. Pepper is already asleep."),
    ("lol", "Right?"),
    ("yes", "Great, I'll do that."),
    ("no", "Fair enough, let's skip it."),
    ("what time is it", "Almost time for a walk."),
    ("cool", "I thought so too."),
)
FILLER_PREFIXES: tuple[str, ...] = (
    "Okay, so ", "Alright, so ", "Sure, ", "Let me think about that. ", "Certainly! ",
    "Here's what I think: ", "Ok, ", "So, ", "Let me start with the easy part. ",
    "I’m just here to help, but ", "As an AI, I can't know for sure, but ",
)
TOOLS: tuple[tuple[str, dict[str, object], dict[str, object]], ...] = (
    ("web_search", {"query": "frost dates Boulder Colorado"}, {"results": 8, "top": "Last frost mid May"}),
    ("weather", {"location": "Boulder, CO", "days": 3}, {"high_f": 54, "low_f": 29, "summary": "clear"}),
    ("calendar_list", {"range": "today"}, {"events": ["standup 9:30", "1:1 with Priya", "agility 18:00"]}),
    ("read_file", {"path": "notes/greenhouse.md"}, {"bytes": 4210, "lines": 112}),
    ("write_file", {"path": "notes/spanish-diary.md"}, {"bytes": 930}),
    ("home_assistant", {"entity": "switch.drip_valve", "action": "turn_off"}, {"state": "off"}),
    ("git_status", {"repo": "greenhouse-firmware"}, {"modified": 3, "branch": "main"}),
    ("run_tests", {"suite": "forecast-api"}, {"passed": 214, "failed": 1}),
    ("recipe_lookup", {"dish": "green chile stew"}, {"minutes": 90, "servings": 6}),
)
TASKS: tuple[str, ...] = (
    "Order new winter cycling gloves", "Renew the dog license for Pepper",
    "Write the design doc for {work}", "Book the agility class for {day}",
    "Flash the new firmware to {tool}", "Prepare Spanish vocabulary flashcards",
    "Send the soil test results to Maya", "Fix the timezone bug in the drip schedule",
)
ACTIONS: tuple[str, ...] = (
    "Turned off the drip valve after the rain.", "Opened the Grafana dashboard and checked moisture.",
    "Scheduled the Sunday meal prep reminder.", "Archived {num} old Slack channels.",
    "Backed up the greenhouse config to the NAS.", "Silenced the flaky alert on {work} for a day.",
)
PII_SNIPPETS: tuple[str, ...] = (
    "My email is demo.person@example.com if the form needs it.",
    "Maya's new number is (555) 013-2291, save it.",
    "Call me at +1 555 014 7720 when you land.",
    "The staging key is {token}, rotate it after the demo.",
    "Send the invoice to billing+greenhouse@example.org.",
    "I pasted the token {token} into the config by mistake.",
)

MONTH_CHAPTERS: dict[int, dict[str, tuple[str, ...]]] = {
    1: {
        "title": ("skiing",),
        "people": ("Beto",),
        "questions": (
            "How was skiing at Eldora?", "Is my knee okay to ski again on {day}?",
            "Should I take another ski lesson with Beto?", "What did you learn on the slopes today?",
        ),
        "sentences": (
            "My cousin Beto took me skiing at Eldora and I fell off the lift twice.",
            "The ski instructor said to lean forward into the boots, downhill, always downhill.",
            "I waxed the rental skis in the garage and the whole house smells of paraffin.",
            "Beto carves down the blue runs like it is nothing while I snowplow behind him.",
            "My left knee is bruised from the mogul field, but I linked {num} turns in a row.",
            "The lift line at Eldora on a powder morning is a lesson in patience.",
            "We drank hot chocolate in the lodge and watched the snow come down sideways.",
            "Next time on the slopes I will wear goggles that do not fog up.",
        ),
    },
    2: {
        "title": ("pottery",),
        "people": ("Odile",),
        "questions": (
            "How was pottery class?", "Did the bowls survive the kiln?",
            "What glaze should I try next?", "Can you remind me how Odile centers the clay?",
        ),
        "sentences": (
            "In pottery class Odile showed me how to center the clay on the wheel with my elbows locked.",
            "Three of my bowls cracked in the kiln, the fourth came out lopsided and I love it.",
            "The celadon glaze pooled in the bottom of the mug like shallow sea water.",
            "Odile says clay remembers every mistake, which is true of bisque and of people.",
            "I trimmed {num} cylinders at the studio on Pearl Street until my wrists ached.",
            "There is gray slip under my fingernails all week now.",
            "The wheel hums and the rest of the world gets quiet for an hour.",
            "My first teapot leaks at the spout, Odile called it an honest teapot.",
        ),
    },
    3: {
        "title": ("the move",),
        "people": ("Mr. Okafor",),
        "questions": (
            "How is the move going?", "Did you sign the lease on Mapleton Hill?",
            "Where should the bookshelves go in the new apartment?", "Have you packed the kitchen yet?",
        ),
        "sentences": (
            "We are moving to an apartment on Mapleton Hill, the landlord Mr. Okafor seems kind.",
            "I packed {num} boxes of books and labeled every one of them in Sharpie.",
            "Carrying the couch up the narrow stairwell took three people and a lot of swearing.",
            "The new apartment has a radiator that clanks like a ghost at night.",
            "Mr. Okafor fixed the leaking faucet the day after we moved in.",
            "Unpacking the kitchen boxes I found a whisk I do not remember buying.",
            "The moving truck was an hour late and we sat on the boxes eating cold pizza.",
            "From the new bedroom window I can see the Flatirons at sunrise.",
        ),
    },
    4: {
        "title": ("the bees",),
        "people": ("Hal",),
        "questions": (
            "How are the bees?", "Did Hal check the hive this week?",
            "Is the queen still laying?", "What do I need for the next hive inspection?",
        ),
        "sentences": (
            "Our neighbor Hal is teaching me beekeeping, and today we opened the hive together.",
            "The smoker keeps going out, Hal packs it with pine needles and burlap.",
            "We found the queen on the fourth frame, long and slow among the workers.",
            "I got stung on the wrist through the glove and it swelled for {num} days.",
            "The bees are bringing in yellow pollen from the dandelions along the ditch.",
            "Hal says a calm hive is a hive with a good queen and enough honey stores.",
            "A swarm hung from the apple tree like a brown beard before Hal caught it in a box.",
            "I painted the new hive boxes pale blue so the bees find their way home.",
        ),
    },
    5: {
        "title": ("running",),
        "people": ("Ines",),
        "questions": (
            "How was the tempo run?", "Am I ready for the Bolder Boulder 10K?",
            "What did coach Ines say about my pace?", "Should I run intervals on the track {day}?",
        ),
        "sentences": (
            "Coach Ines had us run six half-mile intervals on the high school track at dawn.",
            "My tempo run pace finally dipped under eight minutes a mile.",
            "The Bolder Boulder 10K is in two weeks and my shins are complaining.",
            "Ines says to run the first mile slower than feels right and the last one faster.",
            "I bought real running shoes with a wide toe box and my blisters are gone.",
            "The long run along the Boulder Reservoir was hot and flat and wonderful.",
            "Stretching after the run takes longer than the run itself these days.",
            "I crossed the finish line in the stadium and the crowd noise made me cry a little.",
        ),
    },
    6: {
        "title": ("Oaxaca",),
        "people": ("Doña Lupe",),
        "questions": (
            "How is Oaxaca?", "What did you eat at the market in Oaxaca?",
            "How is your host family?", "Did you visit Monte Albán?",
        ),
        "sentences": (
            "In Oaxaca my host Doña Lupe corrects my Spanish over breakfast every morning.",
            "We climbed the ruins of Monte Albán in the heat and looked down on the whole valley.",
            "Doña Lupe taught me to toast the chiles for mole negro until they just start to smoke.",
            "The mercado smells of chocolate, chapulines and fresh tortillas from the comal.",
            "I ordered tlayudas without pointing, which felt like a small victory.",
            "The Spanish school is in an old house with a courtyard full of bougainvillea.",
            "A mezcal maker in Santiago Matatlán let us taste the smoke straight from the still.",
            "The afternoon rain in Oaxaca arrives at four like it has an appointment.",
        ),
    },
    7: {
        "title": ("Ana's wedding",),
        "people": ("Ana", "Uncle Rafael"),
        "questions": (
            "How was Ana's wedding?", "Is my toast for the wedding too long?",
            "How is the family in Santa Fe?", "What should I wear to the rehearsal dinner?",
        ),
        "sentences": (
            "My sister Ana got married in an adobe chapel in Santa Fe and I cried through the vows.",
            "I rewrote my wedding toast {num} times and still forgot the second half.",
            "Uncle Rafael danced with every aunt at the reception until the mariachi band gave up.",
            "The rehearsal dinner had green chile everything, even the cornbread.",
            "Ana and Marco left the reception under a tunnel of sparklers.",
            "Uncle Rafael told the story of Ana falling into the acequia when she was six, again.",
            "The wedding cake was tres leches and nobody saved any for the photographer.",
            "Driving home from Santa Fe the sky over the San Luis Valley was enormous.",
        ),
    },
    8: {
        "title": ("backpacking",),
        "people": ("Jonah",),
        "questions": (
            "How was the backpacking trip?", "Did you make it to Lake Isabelle?",
            "What should I pack for the Indian Peaks?", "How did the tent hold up in the storm?",
        ),
        "sentences": (
            "Jonah and I backpacked into the Indian Peaks and camped above Lake Isabelle.",
            "A thunderstorm rolled over the ridge at two and we hid in the tent counting seconds.",
            "The bear canister is heavy but it beats losing our food to a marmot.",
            "We filtered water from the creek and it tasted like snowmelt and granite.",
            "Jonah forgot the tent poles, so we rigged the fly with trekking poles and hope.",
            "At dawn the lake was glass and a moose waded across the far shore.",
            "My pack weighed {num} pounds too many, next time I leave the camp chair at home.",
            "The wildflowers at Pawnee Pass were purple columbines as far as we could see.",
        ),
    },
    9: {
        "title": ("the launch",),
        "people": ("Dmitri",),
        "questions": (
            "How did the flood forecast launch go?", "Is the investor demo ready?",
            "What did Dmitri say about the river gauges?", "Should we delay the launch by a week?",
        ),
        "sentences": (
            "We launched the flood forecast product today and Dmitri rang a cowbell in the office.",
            "The investor demo crashed once on the river gauge map and then worked perfectly.",
            "Dmitri rebuilt the gauge ingestion overnight because the USGS feed changed its format.",
            "The press release says minutes of warning, and our tests say the same.",
            "Launch week means pizza at nine and a war room with a whiteboard full of arrows.",
            "A county emergency manager emailed to say the flood alerts reached her phone first.",
            "Dmitri and I argued about the alert thresholds until we agreed on the data.",
            "After the launch I slept eleven hours and dreamed of river gauges.",
        ),
    },
    10: {
        "title": ("cider",),
        "people": ("Keiko",),
        "questions": (
            "How was cider pressing?", "Did you pick apples at the orchard in Longmont?",
            "How did the farmers market stall go?", "What should we carve into the pumpkins?",
        ),
        "sentences": (
            "Keiko and I pressed apple cider at the orchard in Longmont with a hand-cranked press.",
            "The Honeycrisp and Jonathan blend made the sweetest cider of the season.",
            "We sold {num} jugs of cider at the farmers market stall before noon.",
            "Keiko carved a pumpkin that looks exactly like Pepper with a surprised face.",
            "The orchard rows were gold and red and full of wasps drunk on fallen apples.",
            "Cider pressing leaves your arms sticky up to the elbows and your shoes smelling of pomace.",
            "The farmers market folks asked if we will be back with hard cider next year.",
            "We stacked the apple crates in the garage and the whole house smells like autumn.",
        ),
    },
    11: {
        "title": ("Miso",),
        "people": ("Miso",),
        "questions": (
            "How is Miso settling in?", "Does Pepper get along with the kitten?",
            "What should we cook for Thanksgiving in Portland?", "Did the vet say Miso is healthy?",
        ),
        "sentences": (
            "We adopted a gray kitten and named her Miso, she fits in one hand.",
            "Pepper sniffed Miso for a full minute and then politely backed away.",
            "Miso climbs the curtains at four in the morning and purrs like an engine.",
            "The vet says Miso needs her second round of shots and less tuna.",
            "Flying to Portland for Thanksgiving with my parents, the plane was full of pies.",
            "Mom made the cranberry sauce from scratch and Dad burned the rolls again.",
            "Miso fell asleep in the laundry basket on the warm towels.",
            "At Thanksgiving in Portland the rain never stopped and nobody minded.",
        ),
    },
    12: {
        "title": ("woodworking",),
        "people": ("Lena", "Sofi"),
        "questions": (
            "How is the bookshelf coming along?", "Are the dovetail joints tight?",
            "What gifts are you making for Lena and Sofi?", "Which wood finish should I use?",
        ),
        "sentences": (
            "I am building a walnut bookshelf in the garage with hand-cut dovetail joints.",
            "The first dovetail was so loose a pencil fit in the gap, the fifth was snug.",
            "There is sawdust in my hair and in the coffee and somehow in the fridge.",
            "For my nieces Lena and Sofi I am carving little wooden foxes as holiday gifts.",
            "The hand plane sings when the blade is sharp and chatters when it is not.",
            "I rubbed {num} coats of oil into the walnut and the grain came alive.",
            "Lena asked for a fox and Sofi asked for a dragon, so now I carve a dragon.",
            "The garage heater barely keeps the glue warm enough to set.",
        ),
    },
}
"""Each calendar month's own chapter: its people, the questions asked and the sentences written.

Most chats, observations and reflections of a month are about its chapter; the rest are about
the steady topics above."""
