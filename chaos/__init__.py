"""`make chaos`: the fault suite (history checker under injected faults, frame fuzzer)."""
