"""End-to-end encryption for the SDK (vodozemac: Olm between devices, Megolm per sender per chat)."""
