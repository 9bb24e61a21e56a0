"""What the recorders in ``captures/`` share: one test PKI, the loopback capture, the
``openssl``/``gnutls`` command lines, Python ``ssl`` ends, key logs, ground truth, the tshark
check of a recording and the command line of every ``record*.py``.

The entry scripts (``captures/record.py``, ``captures/record_certs.py``, ``captures/record_*.py``)
import it as ``recording``: Python puts a script's folder first on ``sys.path``."""
