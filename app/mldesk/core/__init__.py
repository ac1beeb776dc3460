"""The headless engine of mldesk. Nothing in this package may import Qt or mldesk.ui."""
