"""Exchange connectors: one declarative class per exchange over shared websocket/REST machinery."""
