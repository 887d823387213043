"""thumbcache: the common library shared by every thumbcache service.

Nothing here imports a service; services talk to each other only through
:mod:`thumbcache.contracts`.
"""

__version__ = "0.1.0"
