#version 450
// Sample a virtual texture through its page table: one (u, v, lod) per invocation, RGBA8 + resolved level out.
// Level L = clamp(floor(lod), 0, levels - 1); the page-table entry of L's tile holds the cache slot and level R of
// its finest resident ancestor; the texel is read from that slot of the atlas (pages of tile + 2 * border texels).
// filter 0: nearest; 1: bilinear inside the page (the border supplies the neighbours across the tile edge).
layout(local_size_x = 64) in;

layout(set = 0, binding = 0) uniform sampler2D atlas;
layout(std430, set = 0, binding = 1) readonly buffer PageTable { uint entries[]; };
layout(std430, set = 0, binding = 2) readonly buffer Samples { vec4 samples[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Results { uvec2 results[]; };

layout(push_constant) uniform Params {
    uint count;
    uint levels;
    uint size;
    uint tile;
    uint border;
    uint slots_per_row;
    uint filter_mode;
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

vec4 fetch(uint slot, int lx, int ly) {
    uint page = pc.tile + 2u * pc.border;
    int lo = -int(pc.border);
    int hi = int(pc.tile + pc.border) - 1;
    ivec2 origin = ivec2(int((slot % pc.slots_per_row) * page + pc.border),
                         int((slot / pc.slots_per_row) * page + pc.border));
    return texelFetch(atlas, origin + ivec2(clamp(lx, lo, hi), clamp(ly, lo, hi)), 0);
}

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= pc.count) {
        return;
    }
    vec4 q = samples[i];
    float u = clamp(q.x, 0.0, 1.0);
    float v = clamp(q.y, 0.0, 1.0);
    uint level = min(uint(clamp(floor(q.z), 0.0, float(pc.levels - 1u))), pc.levels - 1u);  // NaN-safe
    uint sl = pc.size >> level;
    uint tx = min(uint(u * float(sl)), sl - 1u) / pc.tile;
    uint ty = min(uint(v * float(sl)), sl - 1u) / pc.tile;
    uint entry = entries[level_base(level) + ty * tiles_per_side(level) + tx];
    uint slot = entry & 0xFFFFFFu;
    uint resident = (entry >> 24u) & 0xFu;
    uint sr = pc.size >> resident;
    float fx = u * float(sr);
    float fy = v * float(sr);
    uint nx = min(uint(fx), sr - 1u);
    uint ny = min(uint(fy), sr - 1u);
    int ox = int((nx / pc.tile) * pc.tile);
    int oy = int((ny / pc.tile) * pc.tile);
    vec4 c;
    if (pc.filter_mode == 0u) {
        c = fetch(slot, int(nx) - ox, int(ny) - oy);
    } else {
        float px = fx - 0.5;
        float py = fy - 0.5;
        float x0 = floor(px);
        float y0 = floor(py);
        float wx = px - x0;
        float wy = py - y0;
        int lx = int(x0) - ox;
        int ly = int(y0) - oy;
        vec4 top = mix(fetch(slot, lx, ly), fetch(slot, lx + 1, ly), wx);
        vec4 bottom = mix(fetch(slot, lx, ly + 1), fetch(slot, lx + 1, ly + 1), wx);
        c = mix(top, bottom, wy);
    }
    results[i] = uvec2(packUnorm4x8(c), resident);
}
