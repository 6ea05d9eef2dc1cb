#version 450
#extension GL_ARB_sparse_texture2 : require
// Sample a virtual texture held in a sparse-resident image (backend="sparse"): one (u, v, lod) per invocation,
// RGBA8 + the level read out. Level L = clamp(floor(lod), 0, levels - 1); residency is read from the fetch itself
// (sparseTexelFetchARB): a texel on an unbound page sends the lookup one level coarser, up to the pinned levels.
// filter 0: nearest; 1: bilinear with clamp-to-edge (all four texels on resident pages, else one level coarser).
layout(local_size_x = 64) in;

layout(set = 0, binding = 0) uniform sampler2D image;
layout(std430, set = 0, binding = 1) readonly buffer Samples { vec4 samples[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Results { uvec2 results[]; };

layout(push_constant) uniform Params {
    uint count;
    uint levels;
    uint size;
    uint filter_mode;
} pc;

bool fetch(int level, ivec2 p, out vec4 texel) {
    int s = int(pc.size >> uint(level));
    int code = sparseTexelFetchARB(image, clamp(p, ivec2(0), ivec2(s - 1)), level, texel);
    return sparseTexelsResidentARB(code);
}

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= pc.count) {
        return;
    }
    vec4 q = samples[i];
    float u = clamp(q.x, 0.0, 1.0);
    float v = clamp(q.y, 0.0, 1.0);
    int level = int(min(uint(clamp(floor(q.z), 0.0, float(pc.levels - 1u))), pc.levels - 1u));  // NaN-safe
    vec4 c = vec4(0.0);
    int r = level;
    for (; r < int(pc.levels); ++r) {
        float sr = float(pc.size >> uint(r));
        float fx = u * sr;
        float fy = v * sr;
        if (pc.filter_mode == 0u) {
            if (fetch(r, ivec2(int(fx), int(fy)), c)) {
                break;
            }
        } else {
            float px = fx - 0.5;
            float py = fy - 0.5;
            float x0 = floor(px);
            float y0 = floor(py);
            float wx = px - x0;
            float wy = py - y0;
            ivec2 p = ivec2(int(x0), int(y0));
            vec4 a, b, d, e;
            bool ok = fetch(r, p, a);
            ok = fetch(r, p + ivec2(1, 0), b) && ok;
            ok = fetch(r, p + ivec2(0, 1), d) && ok;
            ok = fetch(r, p + ivec2(1, 1), e) && ok;
            if (ok) {
                c = mix(mix(a, b, wx), mix(d, e, wx), wy);
                break;
            }
        }
    }
    results[i] = uvec2(packUnorm4x8(c), uint(r));
}
