plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

// Must match the executorch Python package that wrote model.pte (manifest "versions.executorch").
val executorchVersion = "1.5.1"

android {
    namespace = "dev.deploytool.demo.android"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.deploytool.demo.android"
        minSdk = 23 // executorch-android's own minSdk
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        ndk { abiFilters += listOf("arm64-v8a", "x86_64") }
    }

    buildTypes {
        release { isMinifyEnabled = false }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    // model.pte is already compact; compressing it would only slow down the copy out of the APK.
    androidResources { noCompress += "pte" }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    implementation(project(":core"))
    implementation("org.pytorch:executorch-android:$executorchVersion")
}
