#version 450
// Virtual-texture feedback, second pass: gather the deduplicated requests of vt_feedback.comp with their counts into
// a small host-readable list, and zero the counters it read (so the counters can stay in device-local memory).
layout(local_size_x = 64) in;

layout(std430, set = 0, binding = 0) buffer Counters { uint counters[]; };
layout(std430, set = 0, binding = 1) readonly buffer Requests { uint request_count; uint requests[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Collected { uint collected_count; uint pad; uvec2 pairs[]; };

layout(push_constant) uniform Params {
    uint capacity;
} pc;

void main() {
    uint k = gl_GlobalInvocationID.x;
    uint n = min(request_count, pc.capacity);
    if (k == 0u) {
        collected_count = n;
    }
    if (k >= n) {
        return;
    }
    uint id = requests[k];
    pairs[k] = uvec2(id, counters[id]);
    counters[id] = 0u;
}
