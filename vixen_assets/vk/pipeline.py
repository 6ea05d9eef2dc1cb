"""Pipelines with one descriptor set of storage buffers, acceleration structures and
combined image samplers, and push constants.

:class:`DescriptorPipeline` holds what they share; :class:`ComputePipeline` is the compute one (the ray-tracing
pipeline is in :mod:`vixen_assets.vk.raytracing`).
"""

from __future__ import annotations

from typing import Any, Sequence

from .logical import LogicalDevice
from .enums import ShaderStage
from .shim import NULL, check, ffi, lib, vk

DESC_STORAGE_BUFFER = 7
DESC_ACCELERATION_STRUCTURE = 1000150000
DESC_COMBINED_IMAGE_SAMPLER = 1
#: ``VK_SHADER_STAGE_COMPUTE_BIT`` (a shader stage; the pipeline stage is ``PipelineStage.COMPUTE_SHADER``)
SHADER_STAGE_COMPUTE = ShaderStage.COMPUTE
BIND_POINT_COMPUTE = 1


class DescriptorPipeline:
    """What every pipeline here shares: shader modules, one descriptor set layout + pool + set, a pipeline layout
    with optional push constants, and ``destroy()``. Subclasses create ``self.pipeline`` over ``self.layout``."""

    bind_point = BIND_POINT_COMPUTE

    def __init__(self, dev: LogicalDevice, bindings: Sequence[int], *, stages: int, push_constant_bytes: int = 0
                 ) -> None:
        """Create the set layout (``bindings[i]`` is the descriptor type of binding ``i``, visible to ``stages``),
        the pipeline layout, a pool and the set; on failure everything created so far is destroyed."""
        self._dev = dev
        self.bindings = list(bindings)
        self.stages = stages
        self.push_constant_bytes = push_constant_bytes
        self.modules: list[Any] = []
        self.set_layout = self.layout = self.pipeline = self.pool = None
        try:
            blist = ffi.new("VkDescriptorSetLayoutBinding[]", len(bindings))
            for i, t in enumerate(bindings):
                blist[i].binding = i
                blist[i].descriptorType = t
                blist[i].descriptorCount = 1
                blist[i].stageFlags = stages
            linfo = ffi.new("VkDescriptorSetLayoutCreateInfo*", {
                "sType": vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, "bindingCount": len(bindings),
                "pBindings": blist})
            p_sl = ffi.new("VkDescriptorSetLayout*")
            check(lib.vkCreateDescriptorSetLayout(dev.handle, linfo, NULL, p_sl), "vkCreateDescriptorSetLayout")
            self.set_layout = p_sl[0]
            pc = ffi.new("VkPushConstantRange*", {"stageFlags": stages, "offset": 0, "size": push_constant_bytes})
            plinfo = ffi.new("VkPipelineLayoutCreateInfo*", {
                "sType": vk.VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, "setLayoutCount": 1, "pSetLayouts": p_sl,
                "pushConstantRangeCount": 1 if push_constant_bytes else 0, "pPushConstantRanges": pc if push_constant_bytes else NULL})
            p_pl = ffi.new("VkPipelineLayout*")
            check(lib.vkCreatePipelineLayout(dev.handle, plinfo, NULL, p_pl), "vkCreatePipelineLayout")
            self.layout = p_pl[0]
            counts: dict[int, int] = {}
            for t in bindings:
                counts[t] = counts.get(t, 0) + 1
            sizes = ffi.new("VkDescriptorPoolSize[]", len(counts))
            for i, (t, c) in enumerate(counts.items()):
                sizes[i].type = t
                sizes[i].descriptorCount = c
            poolinfo = ffi.new("VkDescriptorPoolCreateInfo*", {
                "sType": vk.VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, "maxSets": 1, "poolSizeCount": len(counts),
                "pPoolSizes": sizes})
            p_pool = ffi.new("VkDescriptorPool*")
            check(lib.vkCreateDescriptorPool(dev.handle, poolinfo, NULL, p_pool), "vkCreateDescriptorPool")
            self.pool = p_pool[0]
            ainfo = ffi.new("VkDescriptorSetAllocateInfo*", {
                "sType": vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, "descriptorPool": self.pool,
                "descriptorSetCount": 1, "pSetLayouts": p_sl})
            p_set = ffi.new("VkDescriptorSet*")
            check(lib.vkAllocateDescriptorSets(dev.handle, ainfo, p_set), "vkAllocateDescriptorSets")
            self.set = p_set[0]
        except BaseException:
            self.destroy()
            raise

    def create_module(self, spirv: bytes) -> Any:
        """Create a ``VkShaderModule`` from SPIR-V bytes; it is destroyed with the pipeline.

        :param spirv: the SPIR-V words as bytes.
        """
        code = ffi.new("uint32_t[]", len(spirv) // 4)
        ffi.memmove(code, spirv, len(spirv))
        minfo = ffi.new("VkShaderModuleCreateInfo*", {"sType": vk.VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                                      "codeSize": len(spirv), "pCode": code})
        p_mod = ffi.new("VkShaderModule*")
        check(lib.vkCreateShaderModule(self._dev.handle, minfo, NULL, p_mod), "vkCreateShaderModule")
        self.modules.append(p_mod[0])
        return p_mod[0]

    def write(self, resources: Sequence[Any]) -> None:
        """Point each binding at its resource.

        :param resources: per binding, ``(buffer_handle, offset, size)`` for a storage buffer, an acceleration
            structure handle, or ``(image_view, sampler, image_layout)`` for a combined image sampler.
        """
        n = len(resources)
        writes = ffi.new("VkWriteDescriptorSet[]", n)
        keep: list[Any] = []
        for i, res in enumerate(resources):
            w = writes[i]
            w.sType = vk.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET
            w.dstSet = self.set
            w.dstBinding = i
            w.descriptorCount = 1
            w.descriptorType = self.bindings[i]
            if self.bindings[i] == DESC_ACCELERATION_STRUCTURE:
                handles = ffi.new("VkAccelerationStructureKHR[]", [res])
                asw = ffi.new("VkWriteDescriptorSetAccelerationStructureKHR*", {
                    "sType": vk.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET_ACCELERATION_STRUCTURE_KHR,
                    "accelerationStructureCount": 1, "pAccelerationStructures": handles})
                keep += [handles, asw]
                w.pNext = asw
            elif self.bindings[i] == DESC_COMBINED_IMAGE_SAMPLER:
                view, sampler, layout = res
                ii = ffi.new("VkDescriptorImageInfo*", {"sampler": sampler, "imageView": view, "imageLayout": layout})
                keep.append(ii)
                w.pImageInfo = ii
            else:
                handle, offset, size = res
                bi = ffi.new("VkDescriptorBufferInfo*", {"buffer": handle, "offset": offset, "range": size})
                keep.append(bi)
                w.pBufferInfo = bi
        lib.vkUpdateDescriptorSets(self._dev.handle, n, writes, 0, NULL)

    def cmd_bind(self, cmd: Any, push_constants: bytes = b"") -> None:
        """Bind the pipeline and its descriptor set; push ``push_constants`` (to every stage of the layout).

        :param cmd: a command buffer in the recording state.
        :param push_constants: the push-constant bytes (none: nothing pushed).
        """
        lib.vkCmdBindPipeline(cmd, self.bind_point, self.pipeline)
        sets = ffi.new("VkDescriptorSet[]", [self.set])
        lib.vkCmdBindDescriptorSets(cmd, self.bind_point, self.layout, 0, 1, sets, 0, NULL)
        if push_constants:
            buf = ffi.new("char[]", push_constants)
            lib.vkCmdPushConstants(cmd, self.layout, self.stages, 0, len(push_constants), buf)

    def destroy(self) -> None:
        """Destroy everything; safe to call twice."""
        h = self._dev.handle
        if h is None:
            return
        if self.pool is not None:
            lib.vkDestroyDescriptorPool(h, self.pool, NULL)
            self.pool = None
        if self.pipeline is not None:
            lib.vkDestroyPipeline(h, self.pipeline, NULL)
            self.pipeline = None
        if self.layout is not None:
            lib.vkDestroyPipelineLayout(h, self.layout, NULL)
            self.layout = None
        if self.set_layout is not None:
            lib.vkDestroyDescriptorSetLayout(h, self.set_layout, NULL)
            self.set_layout = None
        while self.modules:
            lib.vkDestroyShaderModule(h, self.modules.pop(), NULL)


class ComputePipeline(DescriptorPipeline):
    """Shader module + set layout + pipeline layout + pipeline + one descriptor set; ``destroy()`` frees all."""

    def __init__(self, dev: LogicalDevice, spirv: bytes, bindings: Sequence[int], *, push_constant_bytes: int = 0,
                 entry: str = "main") -> None:
        """Create it; ``bindings[i]`` is the descriptor type of binding ``i``."""
        self.module: Any = None
        super().__init__(dev, bindings, stages=SHADER_STAGE_COMPUTE, push_constant_bytes=push_constant_bytes)
        try:
            self.module = self.create_module(spirv)
            name = ffi.new("char[]", entry.encode())
            stage = ffi.new("VkPipelineShaderStageCreateInfo*", {
                "sType": vk.VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, "stage": SHADER_STAGE_COMPUTE,
                "module": self.module, "pName": name})
            cinfo = ffi.new("VkComputePipelineCreateInfo*", {
                "sType": vk.VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, "stage": stage[0], "layout": self.layout})
            p_pipe = ffi.new("VkPipeline*")
            check(lib.vkCreateComputePipelines(dev.handle, NULL, 1, cinfo, NULL, p_pipe),
                  "vkCreateComputePipelines")
            self.pipeline = p_pipe[0]
        except BaseException:
            self.destroy()
            raise

    def cmd_dispatch(self, cmd: Any, groups: int, push_constants: bytes = b"") -> None:
        """Bind and dispatch ``groups`` x 1 x 1 workgroups."""
        self.cmd_bind(cmd, push_constants)
        lib.vkCmdDispatch(cmd, groups, 1, 1)

    def destroy(self) -> None:
        """Destroy everything; safe to call twice."""
        super().destroy()
        if not self.modules:
            self.module = None
