"""What the GUI shows and edits, as plain data (no Streamlit): tables, diffs, editor, wizard."""
