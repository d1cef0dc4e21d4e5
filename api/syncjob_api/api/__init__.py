"""The HTTP layer: dependencies (`deps`) and one router per resource (`routes`)."""
