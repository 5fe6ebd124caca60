#include "addon.h"
namespace ddfs {
void InitHash(Napi::Env env, Napi::Object exports) {}
}  // namespace ddfs
