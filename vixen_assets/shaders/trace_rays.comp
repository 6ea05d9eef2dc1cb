#version 460
// trace_rays: one ray query per invocation against a TLAS; reports the closest hit.
// Rays: two vec4 per ray, (origin.xyz, tmin) and (direction.xyz, tmax).
// Hits: {t, instance custom index, primitive index, geometry index}; instance = -1 on a miss.
// Procedural (AABB) geometry: aabb_table[custom index] is the device address of that instance's boxes
// (6 floats each, min.xyz max.xyz); candidates are confirmed with a slab test in object space.
#extension GL_EXT_ray_query : require
#extension GL_EXT_buffer_reference2 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require

layout(local_size_x = 64) in;

layout(set = 0, binding = 0) uniform accelerationStructureEXT tlas;
layout(std430, set = 0, binding = 1) readonly buffer Rays { vec4 rays[]; };
struct Hit { float t; int instance; int primitive; int geometry; };
layout(std430, set = 0, binding = 2) writeonly buffer Hits { Hit hits[]; };
layout(std430, set = 0, binding = 3) readonly buffer AabbTable { uint64_t aabb_table[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer Box { float v[6]; };

layout(push_constant) uniform Params { uint count; } params;

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= params.count) return;
    vec4 o = rays[2u * i];
    vec4 d = rays[2u * i + 1u];
    rayQueryEXT rq;
    rayQueryInitializeEXT(rq, tlas, gl_RayFlagsNoneEXT, 0xFF, o.xyz, o.w, d.xyz, d.w);
    while (rayQueryProceedEXT(rq)) {
        if (rayQueryGetIntersectionTypeEXT(rq, false) == gl_RayQueryCandidateIntersectionAABBEXT) {
            uint inst = uint(rayQueryGetIntersectionInstanceCustomIndexEXT(rq, false));
            uint prim = uint(rayQueryGetIntersectionPrimitiveIndexEXT(rq, false));
            uint64_t base = aabb_table[inst];
            if (base == 0ul) continue;
            Box box = Box(base + uint64_t(prim) * 24ul);
            vec3 lo = vec3(box.v[0], box.v[1], box.v[2]);
            vec3 hi = vec3(box.v[3], box.v[4], box.v[5]);
            vec3 ro = rayQueryGetIntersectionObjectRayOriginEXT(rq, false);
            vec3 rd = rayQueryGetIntersectionObjectRayDirectionEXT(rq, false);
            vec3 inv = 1.0 / rd;
            vec3 t0 = (lo - ro) * inv;
            vec3 t1 = (hi - ro) * inv;
            vec3 tn = min(t0, t1);
            vec3 tf = max(t0, t1);
            float tnear = max(max(tn.x, tn.y), max(tn.z, o.w));
            float tfar = min(min(tf.x, tf.y), tf.z);
            float limit = d.w;
            if (rayQueryGetIntersectionTypeEXT(rq, true) != gl_RayQueryCommittedIntersectionNoneEXT) {
                limit = rayQueryGetIntersectionTEXT(rq, true);
            }
            if (tnear <= tfar && tnear <= limit) {
                rayQueryGenerateIntersectionEXT(rq, tnear);
            }
        } else {
            rayQueryConfirmIntersectionEXT(rq);
        }
    }
    Hit h;
    uint kind = rayQueryGetIntersectionTypeEXT(rq, true);
    if (kind == gl_RayQueryCommittedIntersectionNoneEXT) {
        h.t = 0.0; h.instance = -1; h.primitive = -1; h.geometry = -1;
    } else {
        h.t = rayQueryGetIntersectionTEXT(rq, true);
        h.instance = rayQueryGetIntersectionInstanceCustomIndexEXT(rq, true);
        h.primitive = rayQueryGetIntersectionPrimitiveIndexEXT(rq, true);
        h.geometry = rayQueryGetIntersectionGeometryIndexEXT(rq, true);
    }
    hits[i] = h;
}
