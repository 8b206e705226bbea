"""course_lib: the helper package of the fine-tuning course.

Importing it switches every Hugging Face library to offline mode, so nothing is
ever downloaded. Start a notebook with `course_lib.setup()`.
"""

from course_lib.environment import set_offline

set_offline()

from course_lib.environment import set_seed, setup  # noqa: E402


def add_to_class(cls: type):
    """Decorator: attach the function below it to `cls` as a method (d2l's `add_to_class`).

    Lets a lesson grow a class over several cells: chapter 04 writes LoRALinear's forward pass in
    one cell and adds `merge`/`unmerge` in the next. The function also keeps its own name.
    """
    if not isinstance(cls, type):
        raise TypeError(f"add_to_class takes a class, got {type(cls).__name__}")

    def attach(fn):
        setattr(cls, fn.__name__, fn)
        return fn

    return attach


__all__ = ["setup", "set_seed", "add_to_class"]
__version__ = "0.1.0"
