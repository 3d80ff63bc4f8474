# Conan 2 recipe for outgrow, a header-only C++20 library.
#
# The recipe lives in packaging/conan/ while the sources are at the repository root, so
# export_sources() copies them from two levels up: `conan create packaging/conan` must be
# run from a checkout. The package holds only the headers and the license; consumers get
# the CMake config from Conan's CMakeDeps (find_package(outgrow CONFIG) with the targets
# outgrow::outgrow and, with -o "outgrow/*:with_redis=True", outgrow::redis), not the
# outgrowConfig.cmake that `cmake --install` writes.
#
#   conan create packaging/conan --build=missing -s compiler.cppstd=20
#   conan create packaging/conan --build=missing -s compiler.cppstd=20 -o "outgrow/*:with_redis=True"
import os

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy
from conan.tools.layout import basic_layout
from conan.tools.scm import Version

required_conan_version = ">=2.0"


class OutgrowConan(ConanFile):
    name = "outgrow"
    version = "0.1.0"
    description = "Header-only C++20 toolkit of the scaling patterns services rebuild by hand"
    license = "MIT"
    url = "https://github.com/outgrow/outgrow"
    homepage = "https://github.com/outgrow/outgrow"
    topics = ("header-only", "scaling", "distributed-systems", "consistent-hashing")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    options = {
        "with_redis": [True, False],
    }
    default_options = {
        "with_redis": False,
        # outgrow uses only header-only Boost libraries (Asio, Lockfree). A consumer that
        # needs compiled Boost libraries overrides this: -o "boost/*:header_only=False".
        "boost/*:header_only": True,
    }
    no_copy_source = True

    # Oldest compilers with the C++20 language and library parts outgrow uses (concepts,
    # requires-clauses, <bit>, <concepts>): a cppstd=20 setting alone does not make an
    # older compiler able to build it.
    @property
    def _min_compiler_versions(self):
        return {
            "gcc": "10",
            "clang": "13",
            "apple-clang": "14",
            "msvc": "193",
        }

    @property
    def _repo_root(self):
        # packaging/conan/ -> repository root
        return os.path.normpath(os.path.join(self.recipe_folder, os.pardir, os.pardir))

    def export_sources(self):
        root = self._repo_root
        dst = self.export_sources_folder
        copy(self, "LICENSE", src=root, dst=dst)
        copy(self, "CMakeLists.txt", src=root, dst=dst)
        copy(self, "*.cmake", src=os.path.join(root, "cmake"), dst=os.path.join(dst, "cmake"))
        copy(self, "*.cmake.in", src=os.path.join(root, "cmake"), dst=os.path.join(dst, "cmake"))
        copy(self, "*.hpp", src=os.path.join(root, "include"), dst=os.path.join(dst, "include"))

    def layout(self):
        # Exported sources land in the base source folder, so no src/ subfolder here.
        basic_layout(self)

    def requirements(self):
        # outgrow's public headers include all of these, so consumers need their headers
        # (a header-library propagates its requirements anyway; this says so explicitly).
        self.requires("boost/[>=1.74 <2]", transitive_headers=True)
        self.requires("fmt/[>=9 <12]", transitive_headers=True)
        self.requires("xxhash/[>=0.8.1 <0.9]", transitive_headers=True)
        if self.options.with_redis:
            self.requires("hiredis/[>=1.0 <2]", transitive_headers=True)

    def package_id(self):
        # Same headers for every configuration and option value.
        self.info.clear()

    def validate(self):
        check_min_cppstd(self, 20)
        compiler = str(self.settings.compiler)
        minimum = self._min_compiler_versions.get(compiler)
        if minimum and Version(self.settings.compiler.version) < minimum:
            raise ConanInvalidConfiguration(
                f"{self.ref} needs C++20 support from {compiler} >= {minimum}, "
                f"found {self.settings.compiler.version}")

    def source(self):
        # Nothing to fetch: export_sources() already copied the checkout's files.
        pass

    def build(self):
        # Header-only: nothing to build.
        pass

    def package(self):
        # The headers are copied rather than installed with CMake (OUTGROW_BUILD_TESTS,
        # _EXAMPLES, _BENCHMARKS OFF): the result is the same include/outgrow tree that
        # `cmake --install` produces (*.hpp only), without configuring against the
        # dependencies, and CMakeDeps replaces the installed outgrowConfig.cmake anyway.
        copy(self, "LICENSE", src=self.source_folder,
             dst=os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", src=os.path.join(self.source_folder, "include"),
             dst=os.path.join(self.package_folder, "include"))

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "outgrow")
        # Conan's aggregate target of all components. It must differ from
        # outgrow::outgrow (the core component) or linking the core would also pull in
        # outgrow::redis; it is not part of outgrow's CMake interface.
        self.cpp_info.set_property("cmake_target_name", "outgrow::outgrow_all_unofficial")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []

        core = self.cpp_info.components["outgrow"]
        core.set_property("cmake_target_name", "outgrow::outgrow")
        core.set_property("pkg_config_name", "outgrow")
        core.bindirs = []
        core.libdirs = []
        # "<pkg>::<pkg>" names the whole dependency, whatever components it declares.
        core.requires = ["boost::headers", "fmt::fmt", "xxhash::xxhash"]
        if self.settings.os in ("Linux", "FreeBSD"):
            core.system_libs = ["pthread"]   # Threads::Threads in the CMake build

        if self.options.with_redis:
            redis = self.cpp_info.components["redis"]
            redis.set_property("cmake_target_name", "outgrow::redis")
            redis.set_property("pkg_config_name", "outgrow-redis")
            redis.bindirs = []
            redis.libdirs = []
            redis.includedirs = []           # its headers are in the core's include dir
            redis.requires = ["outgrow", "hiredis::hiredis"]
