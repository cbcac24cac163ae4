"""Functions the worker-pool tests run in child processes."""

import os
import time


def work(payload):
    kind, argument = payload
    if kind == "echo":
        return argument
    if kind == "sleep":
        time.sleep(argument)
        return "slept"
    if kind == "raise":
        raise ValueError(argument)
    if kind == "die":
        os._exit(3)
    if kind == "allocate":
        return len(bytearray(argument))
    if kind == "print":
        print("noise on stdout")  # must not corrupt the answer frames
        return argument
    raise AssertionError(kind)
