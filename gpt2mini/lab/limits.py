"""The lab's bounds, in one place: what the API accepts (the sliders' ranges), how long and how often a stream runs and
updates, and how many events run and wait at once.
"""

MAX_PANES = 8


DEFAULT_PANES = 4  # variants chosen when a corpus is picked (the first four)


EXAMPLES = [
    ["shakespeare", "ROMEO:\nO, she doth teach the torches to burn bright!"],
    ["shakespeare", "First Citizen:\n"],
    ["wagahai", "吾輩は猫である。"],
    ["wagahai", "主人は"],
]


# What the API accepts, by SamplingSettings' field names (SamplingSettings.checked holds a request to these ranges);
# the sliders use the same ranges.
LIMITS = {
    "temperature": (0.0, 2.0),
    "top_k": (0, 200),
    "top_p": (0.01, 1.0),
    "max_new_tokens": (1, 2000),
    "repetition_penalty": (1.0, 2.0),
    "seed": (0, 2**31 - 1),
}


WHOLE_SETTINGS = ("top_k", "max_new_tokens", "seed")  # integers: 40, "40" and 40.0 are 40; 40.5 is refused


ATTENTION_CHARS = 64


TIME_LIMIT_S = 120  # a generation stops itself after this long (Gradio's time_limit only covers .stream events)


UPDATE_S = 0.1  # a streaming event updates the page at most this often (with few streams decoding: update_every)


CALM_STREAMS = 8  # streams decoding at once up to which the pages update every UPDATE_S


PASSAGE_WINDOWS = 4  # the knockout's fixed passage: the first 4 x 256 characters of the validation split


# RAW_INPUTS: the events that take user input run with preprocess=False, so the handlers get the request's values
# as sent and check them all themselves (streaming.check_settings, catalog.Lab.get, streaming.prepare_prompt,
# catalog.as_list, knockouts.parse_parts): anything out of range or of the wrong type gets one gr.Error naming the
# setting. Gradio's own preprocessing would instead fail with an unexplained server error on, say, a string sent for a
# slider.
GENERATING_AT_ONCE = 32  # generation events running at once: their streams share one batched step (StreamServer)


KNOCKOUTS_AT_ONCE = 4  # knockouts running at once: each steps a private, hooked copy of the model on its own thread


QUEUE_SIZE = 64  # events waiting beyond those running; one more gets Gradio's "Queue is full" at once (HTTP 503)
