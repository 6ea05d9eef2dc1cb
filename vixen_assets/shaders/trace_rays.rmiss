#version 460
// trace_rays (ray-tracing pipeline): miss; the payload reports no hit (instance = -1).
#extension GL_EXT_ray_tracing : require

struct Hit { float t; int instance; int primitive; int geometry; };
layout(location = 0) rayPayloadInEXT Hit payload;

void main() {
    payload.t = 0.0;
    payload.instance = -1;
    payload.primitive = -1;
    payload.geometry = -1;
}
