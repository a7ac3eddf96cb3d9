"""Text that ships with the package, so calibration and accuracy need no dataset download.

Written for this project (no third-party text). ``CALIBRATION`` feeds ModelOpt's calibration;
``HELDOUT`` is never used for calibration and measures perplexity; ``PROMPTS`` start the greedy
generations compared between the quantized and the unquantized model. The paragraphs mix
registers (explanations, narrative, instructions, dialogue, code, numbers) so that activation
ranges seen in calibration resemble a chat model's traffic.
"""

from __future__ import annotations

CALIBRATION = """\
The water cycle moves water between the oceans, the air and the land. Sunlight warms the surface \
of the sea, and some of the water evaporates into vapour. As warm air rises it cools, and the \
vapour condenses into tiny droplets that form clouds. When the droplets grow heavy enough they \
fall as rain or snow. Rivers carry much of that water back to the sea, while some soaks into the \
ground and feeds wells and springs for years before it returns.

In the spring of that year the village decided to rebuild the old stone bridge. The river had \
flooded twice during the winter, and the wooden planks laid across the broken arch were no longer \
safe for carts. Masons came from the town on the hill, bringing chisels, ropes and a patient \
foreman who had built bridges in three valleys. By midsummer the new arch stood firm, and the \
children raced across it every evening to watch the swallows skim the water.

To make a simple tomato sauce, warm two spoonfuls of olive oil in a wide pan over medium heat. \
Add a finely chopped onion and a pinch of salt, and cook it slowly until it is soft and golden, \
about ten minutes. Stir in two crushed cloves of garlic for one minute, then add a tin of \
chopped tomatoes. Let the sauce simmer gently for twenty minutes, stirring now and then, and \
finish it with torn basil leaves and a little black pepper.

User: Can you explain what a hash table is?
Assistant: A hash table stores values under keys. It runs each key through a hash function, \
which turns the key into a number, and uses that number to pick a slot in an array. Looking a \
key up repeats the same calculation, so on average it takes constant time no matter how many \
entries the table holds. When two keys land in the same slot, the table resolves the collision, \
for example by keeping a short list in that slot or by probing the next free one.

def moving_average(values, window):
    \"\"\"Return the average of each run of `window` consecutive values.\"\"\"
    if window <= 0:
        raise ValueError("window must be positive")
    total = sum(values[:window])
    averages = [total / window]
    for i in range(window, len(values)):
        total += values[i] - values[i - window]
        averages.append(total / window)
    return averages

The train left the station at 9:40 and travelled at an average speed of 84 kilometres per hour. \
After two and a half hours it stopped for fifteen minutes, then covered the remaining 126 \
kilometres at 72 kilometres per hour. The whole journey was therefore 210 plus 126, or 336 \
kilometres, and it arrived at 13:55, four hours and fifteen minutes after it set off.

Volcanic islands often begin as eruptions on the sea floor. Layer upon layer of lava piles up \
until, after thousands of years, the summit breaks the surface. Once the volcano falls quiet, \
wind, rain and waves begin to wear it down, and coral reefs may grow around its shores. Some \
island chains form as a plate of the earth's crust slides slowly over a fixed hot spot, so the \
islands grow older the farther they lie from the active volcano.

Dear Ms. Alvarez, thank you for your letter of 12 March. I am pleased to confirm that the \
workshop will take place in the main hall on Thursday afternoon, from two until five o'clock. \
Please bring your own laptop; the organisers will provide power strips, coffee and printed \
handouts. If you need a parking permit, reply to this message before Monday and we will post \
one to you. Kind regards, Daniel Okafor.

The library's reading room was quiet except for the hum of the radiators. Mira opened the heavy \
atlas on the oak table and traced the coastline with her finger, looking for the harbour her \
grandmother had described. The names on the map had changed since then, but the shape of the \
bay, a hook curling towards the north, was exactly as she remembered from the stories.

User: How do I keep my houseplants healthy in winter?
Assistant: Give them as much light as you can, since days are short; a bright window facing \
south or west helps. Water less often, because most plants grow slowly in winter and soggy \
soil invites rot; check that the top few centimetres are dry first. Keep them away from cold \
draughts and from radiators that dry the air, and wipe dust off the leaves so they can use the \
light they get.

A budget for a small bakery might list flour, butter, sugar and eggs as its main costs, \
followed by rent, electricity for the ovens and wages for two part-time assistants. If the \
bakery sells 180 loaves a day at 3.20 each and its daily costs come to 410, it earns 576 in \
sales and keeps 166 before tax. Raising the price by twenty cents would add 36 a day, provided \
that no customers walk away.

Photosynthesis lets plants turn light into chemical energy. Inside the leaves, chlorophyll \
absorbs mostly red and blue light and uses its energy to split water molecules. The oxygen is \
released into the air, while the hydrogen and energy are used to build sugars from carbon \
dioxide. Those sugars feed the plant's growth and, through the food chain, nearly every animal \
on land.

SELECT customer_id, COUNT(*) AS orders, SUM(total) AS spent
FROM orders
WHERE created_at >= '2024-01-01'
GROUP BY customer_id
HAVING COUNT(*) > 3
ORDER BY spent DESC
LIMIT 20;

The old lighthouse keeper kept a logbook for forty years. Each night he wrote down the weather, \
the ships that passed and the hour the lamp was lit. On calm evenings the entries were short; \
during storms they filled whole pages, describing waves that broke over the gallery rail and \
boats that crept past the rocks with their lanterns swinging. The last entry simply says that \
the new electric beacon worked well and that he could finally sleep through the night.
"""

HELDOUT = """\
Glaciers are rivers of ice that move under their own weight. Snow that falls in the mountains \
year after year is pressed into dense ice, and once the ice is thick enough it begins to flow \
downhill, a few centimetres or a few metres each day. As it moves it scrapes the rock beneath, \
carving deep valleys shaped like the letter U and carrying boulders far from where they began. \
When the climate warms, a glacier melts faster than new snow can feed it, and its front \
retreats up the valley.

The market opened before sunrise. Farmers unloaded crates of apples, cabbages and potatoes \
from their vans, while the fishmonger laid out the morning's catch on beds of crushed ice. By \
seven o'clock the square was crowded with shoppers, and the smell of fresh bread drifted from \
the bakery on the corner. An old man played the accordion beside the fountain, and a small dog \
sat at his feet, watching the pigeons with great interest.

User: What is the difference between weather and climate?
Assistant: Weather is what the atmosphere does over hours or days: today's rain, tomorrow's \
wind, this afternoon's temperature. Climate is the long-term pattern of weather in a place, \
usually averaged over thirty years or more. A single cold week says little about the climate, \
but a steady rise in average temperatures over decades does.

To replace a bicycle inner tube, first release the brake and remove the wheel. Let out any \
remaining air, then use two tyre levers to lift one side of the tyre over the rim. Pull out the \
old tube, run your fingers carefully around the inside of the tyre to find the thorn or glass \
that caused the puncture, and remove it. Put a little air into the new tube so that it holds \
its shape, tuck it into the tyre, push the tyre back onto the rim, and pump it up to the \
pressure printed on the sidewall.

def is_palindrome(text):
    \"\"\"True when `text` reads the same backwards, ignoring case and spaces.\"\"\"
    letters = [c.lower() for c in text if c.isalnum()]
    return letters == letters[::-1]

A school orders 24 boxes of pencils with 12 pencils in each box, and shares them equally among \
8 classes. Each class receives 24 times 12 divided by 8, which is 36 pencils. If every class has \
18 pupils, each pupil gets exactly two pencils and none are left over.

Bees communicate the location of flowers through a dance. A forager returning to the hive \
walks in a straight line while waggling her body, then circles back and repeats the run. The \
angle of the straight run relative to vertical tells the other bees the direction of the food \
relative to the sun, and the length of the waggle tells them how far away it is. Within \
minutes, dozens of workers can set off towards a patch of clover more than a kilometre away.

When the storm finally passed, the harbour was littered with broken branches and loose rope. \
The fishermen walked along the quay inspecting their boats, tightening moorings and bailing out \
rainwater. Nobody had been hurt, and by noon the sun was shining on the wet cobblestones as if \
the night of thunder had never happened.
"""

PROMPTS = (
    "The capital of France is",
    "Here is a short explanation of how a rainbow forms:",
    "def fibonacci(n):",
    "Three tips for learning a new language are",
    "Once upon a time, in a small village by the sea,",
    "The main difference between a virus and a bacterium is",
)
