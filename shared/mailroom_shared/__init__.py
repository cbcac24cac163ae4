"""mailroom's common library. Holds no business logic of any service."""
