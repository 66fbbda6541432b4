"""Wire pieces of the pod streams shared by both ends of the relay: the
apiserver (which proxies exec/attach/port-forward) and the node agent's
stream server. Imports nothing of the project, so both may use it.
"""
