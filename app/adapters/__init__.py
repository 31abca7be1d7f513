"""Channel adapters: one module per external messaging provider behind one small interface."""
