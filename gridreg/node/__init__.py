"""
A gridreg node (C{twistd gridnode}): it keeps a session with every registry
replica and runs the servers the deployed applications place on it, as
IceGrid's C{icegridnode} does.
"""
