"""Exercise checks, one module per chapter (`from course_lib.course.checkers import ch01`).

Used by the check cells of solutions/ and exercises/.
"""
