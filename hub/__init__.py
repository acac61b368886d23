"""The connected side's orchestration: channels and sync runs."""
