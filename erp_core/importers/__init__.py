"""Ways in for history kept elsewhere: dataset adapters (``scms``) and, to come, the documented
export format of issue 7."""
