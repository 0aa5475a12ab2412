"""Qt-free view state (metric buffers, run history, dataset catalog), unit-testable without drawing."""
