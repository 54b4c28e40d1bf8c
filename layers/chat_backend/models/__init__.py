"""The data shapes: common types, client and server frames, events, stored records, queue payloads."""
