"""FIX 4.4 edge: the QuickFIX initiator bridge (``bridge.py``) and its compiled codec (``codec.py``)."""
