"""Moving bytes between host and GPU: staging pool and ring, batched uploader, readback."""
