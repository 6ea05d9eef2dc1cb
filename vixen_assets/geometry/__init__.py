"""Pure-CPU mesh preparation: USD mesh data in, GPU-ready interleaved vertex and index buffers out.

``mesh_source`` holds :class:`~vixen_assets.geometry.mesh_source.MeshSource` (the arrays of one UsdGeom.Mesh as
read, with :meth:`~vixen_assets.geometry.mesh_source.MeshSource.content_hash`) and the validation; ``usd_mesh``
reads one from a prim (:func:`~vixen_assets.geometry.usd_mesh.read_mesh_source`); ``prepare`` turns a batch of
sources into :class:`~vixen_assets.geometry.packing.PreparedMesh` objects
(:func:`~vixen_assets.geometry.prepare.prepare_meshes`) with vectorized numpy passes over the whole batch
(``batch`` concatenates it): ``triangulate`` (fan plus ear clipping for concave faces), ``normals`` (smooth
area-weighted normals), ``primvars`` (flattening and vertex splitting) and ``packing`` (the interleaved vertex
layout, index dtype and submeshes). Nothing here touches Vulkan.
"""
