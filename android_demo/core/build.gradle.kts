// Platform-independent demo logic (manifest, normalisation, softmax, top-k): plain JVM Kotlin,
// no Android SDK, so it is unit-testable anywhere and shared with the app module.
plugins {
    id("org.jetbrains.kotlin.jvm")
}

kotlin {
    jvmToolchain(17)
}

// The fixture check is a plain main() so it also runs with a bare kotlinc (tests/demos).
val fixtureCheck by tasks.registering(JavaExec::class) {
    description = "Checks the core against ../tests/demos/fixture.json (shared with the iOS demo)."
    group = "verification"
    classpath = sourceSets["test"].runtimeClasspath
    mainClass.set("dev.deploytool.demo.core.FixtureCheckKt")
    args(rootProject.file("../tests/demos/fixture.json").absolutePath)
}

tasks.named("check") { dependsOn(fixtureCheck) }
