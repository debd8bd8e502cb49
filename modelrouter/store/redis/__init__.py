"""The Redis store (extra ``modelrouter[redis]``): shared state for many workers and hosts."""
