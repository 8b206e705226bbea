"""The course's synthetic world and its oracle: people, places and facts; the documents, reviews,
clinic notes, instructions and preference pairs generated from them (`make data`); and the ground
truth the course measures against (`gold_reward`, `is_correct`, the review `LABELS`).

Not a fine-tuning technique: it is the laboratory. Taught in chapter 00 (the tour of the world).
"""
