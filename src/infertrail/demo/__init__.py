"""Demo models and traffic simulators."""
