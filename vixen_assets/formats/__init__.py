"""File-format readers (KTX2, MagicaVoxel ``.vox``) and the Vulkan format table: pure CPU, no GPU."""
