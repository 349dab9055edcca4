"""The API's routes, one module per resource; each only maps HTTP to a service and back."""
