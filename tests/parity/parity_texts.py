"""Texts the parity tests run through both engines: several scripts, punctuation for the skiplist,
and lengths that differ enough to pad every batch."""

DOCS = [
    "Arc<Mutex<T>> is the idiomatic way to share mutable state across threads in Rust.",
    "Preheat the oven to 200C.",
    "Los pingüinos viven en el hemisferio sur, sobre todo en la Antártida.",
    "東京は日本の首都であり、世界最大の都市圏の一つです。",
    "Punctuation!! Should, be; skipped: right? (yes)",
]
QUERIES = ["how do penguins survive the cold", "日本の首都はどこですか", "Wo leben Pinguine?"]
