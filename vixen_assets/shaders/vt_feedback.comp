#version 450
// Virtual-texture feedback: turn (u, v, lod) samples into deduplicated tile requests.
// Each sample adds one to its tile's counter (one counter per tile per level, page-table order); the first sample of
// a tile appends the tile's number to the request list. The host reads the list and the counters of the listed
// tiles, then zeroes exactly those counters for the next pass.
layout(local_size_x = 64) in;

layout(std430, set = 0, binding = 0) readonly buffer Samples { vec4 samples[]; };
layout(std430, set = 0, binding = 1) buffer Counters { uint counters[]; };
layout(std430, set = 0, binding = 2) buffer Requests { uint request_count; uint requests[]; };

layout(push_constant) uniform Params {
    uint count;
    uint levels;
    uint size;
    uint tile;
    uint capacity;
    float bias;
} pc;

uint tiles_per_side(uint level) { return max(1u, (pc.size >> level) / pc.tile); }

uint level_base(uint level) {
    uint base = 0u;
    for (uint i = 0u; i < level; ++i) {
        uint n = tiles_per_side(i);
        base += n * n;
    }
    return base;
}

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= pc.count) {
        return;
    }
    vec4 q = samples[i];
    float u = clamp(q.x, 0.0, 1.0);
    float v = clamp(q.y, 0.0, 1.0);
    uint level = min(uint(clamp(floor(q.z + pc.bias), 0.0, float(pc.levels - 1u))), pc.levels - 1u);  // NaN-safe
    uint sl = pc.size >> level;
    uint tx = min(uint(u * float(sl)), sl - 1u) / pc.tile;
    uint ty = min(uint(v * float(sl)), sl - 1u) / pc.tile;
    uint id = level_base(level) + ty * tiles_per_side(level) + tx;
    if (atomicAdd(counters[id], 1u) == 0u) {
        uint k = atomicAdd(request_count, 1u);
        if (k < pc.capacity) {
            requests[k] = id;
        }
    }
}
