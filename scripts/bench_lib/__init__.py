"""Helpers of scripts/bench: the fast mock upstream, wrk runs, process figures."""
