"""Reusable widgets: the metric plot, the log pane, form fields."""
