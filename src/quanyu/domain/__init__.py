"""Pure business rules. Standard library only; time is always a parameter."""
