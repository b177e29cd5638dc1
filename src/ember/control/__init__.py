"""The control plane: the function registry and its validation rules."""
