"""The maths of the library, pure and free of I/O: hypernetworks as functions from task
embeddings to parameter pytrees, exact look-ahead gradients, the output regulariser, losses, and
the continual-learning metrics of an evaluation matrix. Nothing here imports another layer."""
