"""The spool: where every accepted message lives until it is delivered.

ids.py       message ids (Exim's 23-character form; the 16-character one read)
envelope.py  `Envelope` and its parts: the contents of a -H file as values
format.py    the -H and -J file formats (strict reader, safe writer)
files.py     durable writes, atomic -H install, fcntl locks
writer.py    `MessageWriter`: streaming a new message in, committing it
store.py     `Spool`: the directory, every operation on a queued message

Nothing is imported here, so that importing one module (ids, say) does not
pull in the others.
"""
