"""course_lib: the helper package of the fine-tuning course.

Importing it switches every Hugging Face library to offline mode, so nothing is
ever downloaded. Start a notebook with `course_lib.setup()`.
"""

from course_lib.environment import set_offline

set_offline()

from course_lib.environment import set_seed, setup  # noqa: E402

__all__ = ["setup", "set_seed"]
__version__ = "0.1.0"
