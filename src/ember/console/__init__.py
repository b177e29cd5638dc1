"""The web console (``/console``): pages over the services the API uses."""
